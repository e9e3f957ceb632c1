from django.urls import include, path

from conversations import views
from conversations.files import views as files
from conversations.gateway import keys
from conversations.projects import views as projects
from conversations.shares import views as shares

# What a user does to one of their conversations, under /c/<id>/.
conversation = [
    path("", views.chat, name="conversation"),
    path("settings/", views.conversation_settings, name="settings"),
    path("settings/reset/", views.reset_settings, name="reset_settings"),
    path("settings/tools/", views.conversation_tools, name="conversation_tools"),
    path("rename/", views.rename, name="rename"),
    path("pin/", views.toggle, {"flag": "pinned"}, name="pin"),
    path("archive/", views.toggle, {"flag": "archived"}, name="archive"),
    path("delete/", views.delete, name="delete"),
    path("restore/", views.restore, name="restore"),
    path("export.json", views.export_json, name="export_json"),
    path("export.md", views.export_markdown, name="export_markdown"),
    path("share/", shares.share_conversation, name="share_conversation"),
    path("move/", projects.move, name="move"),
]

# ... and to one message, under /m/<id>/.
message = [
    path("delete/", views.delete_message, name="delete_message"),
    path("show/", views.show_branch, name="show_branch"),
    path("request.json", views.message_request, name="message_request"),
]

# ... and to a share link, under /s/<token>/: read it, continue it, or revoke it (its owner).
share = [
    path("", shares.shared, name="share"),
    path("continue/", shares.continue_share, name="continue_share"),
    path("revoke/", shares.revoke_share, name="revoke_share"),
]

# ... and to a file, under /files/<id>/ (docs/protocol.md, Files).
file = [
    path("", files.detail, name="file"),
    path("delete/", files.delete, name="delete_file"),
]

# ... and to a project, under /p/<id>/.
project = [
    path("", projects.project, name="project"),
    path("delete/", projects.delete_project, name="delete_project"),
]

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<uuid:conversation_id>/", include(conversation)),
    path("m/<uuid:message_id>/", include(message)),
    path("s/<slug:token>/", include(share)),
    path("files/", files.upload, name="upload_file"),
    path("p/new/", projects.new_project, name="new_project"),
    path("p/<uuid:project_id>/", include(project)),
    path("files/<uuid:file_id>/", include(file)),
    path("accounts/signup/", views.signup, name="signup"),
    path("usage/", views.my_usage, name="my_usage"),
    path("settings/", views.preferences, name="preferences"),
    path("settings/keys/", keys.api_keys, name="api_keys"),
    path("settings/keys/<uuid:key_id>/revoke/", keys.revoke_api_key, name="revoke_api_key"),
    path("settings/shares/", shares.shares, name="shares"),
    path("search/", views.search, name="search"),
    path("models/", views.offered_models, name="offered_models"),
]
