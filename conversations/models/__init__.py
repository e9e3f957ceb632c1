"""The app's models, by concern: providers and prices, conversations and messages, the
usage ledger and quotas, site settings."""

from conversations.models.conversations import (
    Conversation,
    Message,
    Preferences,
    ToolApproval,
    branch_through,
)
from conversations.models.keys import ApiKey
from conversations.models.ledger import Quota, UsageRecord
from conversations.models.providers import LanguageModel, Price, Provider
from conversations.models.site import SiteSettings
from conversations.models.tools import Approval, BuiltinTool, ToolServer

__all__ = [
    "ApiKey",
    "Approval",
    "BuiltinTool",
    "Conversation",
    "LanguageModel",
    "Message",
    "Preferences",
    "Price",
    "Provider",
    "Quota",
    "SiteSettings",
    "ToolApproval",
    "ToolServer",
    "UsageRecord",
    "branch_through",
]
