"""The app's models, by concern: providers and prices, conversations and messages, the
usage ledger and quotas, share links, site settings."""

from conversations.models.conversations import (
    Conversation,
    Message,
    Preferences,
    branch_through,
)
from conversations.models.keys import ApiKey
from conversations.models.ledger import Quota, UsageRecord
from conversations.models.providers import LanguageModel, Price, Provider
from conversations.models.shares import Share
from conversations.models.site import SiteSettings

__all__ = [
    "ApiKey",
    "Conversation",
    "LanguageModel",
    "Message",
    "Preferences",
    "Price",
    "Provider",
    "Quota",
    "Share",
    "SiteSettings",
    "UsageRecord",
    "branch_through",
]
