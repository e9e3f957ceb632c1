from django.urls import include, path

from conversations import views
from conversations.gateway import keys

# What a user does to one of their conversations, under /c/<id>/.
conversation = [
    path("", views.chat, name="conversation"),
    path("settings/", views.conversation_settings, name="settings"),
    path("settings/reset/", views.reset_settings, name="reset_settings"),
    path("rename/", views.rename, name="rename"),
    path("pin/", views.toggle, {"flag": "pinned"}, name="pin"),
    path("archive/", views.toggle, {"flag": "archived"}, name="archive"),
    path("delete/", views.delete, name="delete"),
    path("restore/", views.restore, name="restore"),
    path("export.json", views.export_json, name="export_json"),
    path("export.md", views.export_markdown, name="export_markdown"),
]

# ... and to one message, under /m/<id>/.
message = [
    path("delete/", views.delete_message, name="delete_message"),
    path("show/", views.show_branch, name="show_branch"),
    path("request.json", views.message_request, name="message_request"),
]

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<uuid:conversation_id>/", include(conversation)),
    path("m/<uuid:message_id>/", include(message)),
    path("accounts/signup/", views.signup, name="signup"),
    path("usage/", views.my_usage, name="my_usage"),
    path("settings/", views.preferences, name="preferences"),
    path("settings/keys/", keys.api_keys, name="api_keys"),
    path("settings/keys/<uuid:key_id>/revoke/", keys.revoke_api_key, name="revoke_api_key"),
    path("search/", views.search, name="search"),
    path("models/", views.offered_models, name="offered_models"),
]
