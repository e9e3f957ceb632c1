"""Django admin, by what an administrator runs: providers and models, conversations (read
only), usage and quotas, users and site settings, shared links. Importing the modules
registers them."""

from conversations.admin import accounts, conversations, providers, usage
from conversations.gateway import admin as gateway
from conversations.shares import admin as shares

__all__ = ["accounts", "conversations", "gateway", "providers", "shares", "usage"]
