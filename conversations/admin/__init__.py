"""Django admin, by what an administrator runs: providers and models, conversations (read
only), tools, usage and quotas, users and site settings. Importing the modules registers them."""

from conversations.admin import accounts, conversations, providers, tools, usage
from conversations.gateway import admin as gateway

__all__ = ["accounts", "conversations", "gateway", "providers", "tools", "usage"]
