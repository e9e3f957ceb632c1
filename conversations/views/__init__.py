"""The pages: server-rendered views, each beginning with one access-checked getter.

What shows a user's conversations, settings or usage is `cache_control(private=True,
no_store=True)`: no proxy may share it, and no browser keeps it on disk for the next person
at a shared computer once its user has signed out.
"""

from conversations.views.accounts import my_usage, preferences, sign_in, signup
from conversations.views.chat import chat, offered_models, search, show_branch
from conversations.views.conversations import (
    conversation_settings,
    conversation_tools,
    delete,
    export_json,
    export_markdown,
    rename,
    reset_settings,
    restore,
    toggle,
)
from conversations.views.messages import delete_message, message_request

__all__ = [
    "chat",
    "conversation_settings",
    "conversation_tools",
    "delete",
    "delete_message",
    "export_json",
    "export_markdown",
    "message_request",
    "my_usage",
    "offered_models",
    "preferences",
    "rename",
    "reset_settings",
    "restore",
    "search",
    "show_branch",
    "sign_in",
    "signup",
    "toggle",
]
