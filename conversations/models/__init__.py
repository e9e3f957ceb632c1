"""The app's models, by concern: providers and prices, conversations and messages, the
usage ledger and quotas, site settings, membership (invitations, single sign-on) and
privacy (administrators' readings of conversations)."""

from conversations.models.conversations import (
    Conversation,
    Message,
    Preferences,
    branch_through,
)
from conversations.models.keys import ApiKey
from conversations.models.ledger import Quota, UsageRecord
from conversations.models.membership import (
    BreakGlassAccount,
    Invitation,
    SsoIdentity,
    SsoSession,
)
from conversations.models.privacy import ConversationReading
from conversations.models.providers import LanguageModel, Price, Provider
from conversations.models.site import SiteSettings

__all__ = [
    "ApiKey",
    "BreakGlassAccount",
    "Conversation",
    "ConversationReading",
    "Invitation",
    "LanguageModel",
    "Message",
    "Preferences",
    "Price",
    "Provider",
    "Quota",
    "SiteSettings",
    "SsoIdentity",
    "SsoSession",
    "UsageRecord",
    "branch_through",
]
