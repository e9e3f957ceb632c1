from django.urls import path

from conversations import views
from conversations.gateway import keys

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<uuid:conversation_id>/", views.chat, name="conversation"),
    path("c/<uuid:conversation_id>/settings/", views.conversation_settings, name="settings"),
    path("c/<uuid:conversation_id>/settings/reset/", views.reset_settings, name="reset_settings"),
    path("c/<uuid:conversation_id>/rename/", views.rename, name="rename"),
    path("c/<uuid:conversation_id>/pin/", views.toggle, {"flag": "pinned"}, name="pin"),
    path("c/<uuid:conversation_id>/archive/", views.toggle, {"flag": "archived"}, name="archive"),
    path("c/<uuid:conversation_id>/delete/", views.delete, name="delete"),
    path("c/<uuid:conversation_id>/restore/", views.restore, name="restore"),
    path("c/<uuid:conversation_id>/export.json", views.export_json, name="export_json"),
    path("c/<uuid:conversation_id>/export.md", views.export_markdown, name="export_markdown"),
    path("m/<uuid:message_id>/delete/", views.delete_message, name="delete_message"),
    path("m/<uuid:message_id>/show/", views.show_branch, name="show_branch"),
    path("m/<uuid:message_id>/request.json", views.message_request, name="message_request"),
    path("accounts/signup/", views.signup, name="signup"),
    path("usage/", views.my_usage, name="my_usage"),
    path("settings/", views.preferences, name="preferences"),
    path("settings/keys/", keys.api_keys, name="api_keys"),
    path("settings/keys/<uuid:key_id>/revoke/", keys.revoke_api_key, name="revoke_api_key"),
    path("search/", views.search, name="search"),
]
