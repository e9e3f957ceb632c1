"""Every input is validated here: websocket events and HTTP forms alike.

`params` holds the one set of rules for request fields; `events` the websocket's events;
`settings` the per-field settings and preferences forms built on those rules; `pages` the
rest of the pages' forms.
"""

from conversations.forms.events import EVENT_FORMS
from conversations.forms.pages import (
    AdminPasswordChangeForm,
    AdminUserCreationForm,
    ConversationToolsForm,
    PasswordChangeForm,
    RenameForm,
    SignupForm,
)
from conversations.forms.params import ParamsForm, error_text
from conversations.forms.settings import ConversationSettingsForm, PreferencesForm

__all__ = [
    "EVENT_FORMS",
    "AdminPasswordChangeForm",
    "AdminUserCreationForm",
    "ConversationSettingsForm",
    "ConversationToolsForm",
    "ParamsForm",
    "PasswordChangeForm",
    "PreferencesForm",
    "RenameForm",
    "SignupForm",
    "error_text",
]
