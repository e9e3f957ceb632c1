"""The app's models, by concern: providers and prices, conversations and messages, the
usage ledger and quotas, share links, site settings, membership (invitations, single sign-on),
privacy (administrators' readings of conversations), files and projects."""

from conversations.models.conversations import (
    Conversation,
    Message,
    Preferences,
    ToolApproval,
    branch_through,
)
from conversations.models.files import File, Passage
from conversations.models.keys import ApiKey
from conversations.models.ledger import Quota, UsageRecord
from conversations.models.membership import (
    BreakGlassAccount,
    Invitation,
    SsoIdentity,
    SsoSession,
)
from conversations.models.privacy import ConversationReading
from conversations.models.projects import Project
from conversations.models.providers import LanguageModel, Price, Provider
from conversations.models.shares import Share
from conversations.models.site import SiteSettings
from conversations.models.tools import Approval, BuiltinTool, ToolServer

__all__ = [
    "ApiKey",
    "Approval",
    "BreakGlassAccount",
    "BuiltinTool",
    "Conversation",
    "ConversationReading",
    "File",
    "Invitation",
    "LanguageModel",
    "Message",
    "Passage",
    "Preferences",
    "Price",
    "Project",
    "Provider",
    "Quota",
    "Share",
    "SiteSettings",
    "SsoIdentity",
    "SsoSession",
    "ToolApproval",
    "ToolServer",
    "UsageRecord",
    "branch_through",
]
