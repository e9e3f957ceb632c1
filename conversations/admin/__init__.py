"""Django admin, by what an administrator runs: providers and models, conversations (read
only), usage and quotas, users and site settings, invitations. Importing the modules
registers them."""

from conversations.admin import accounts, conversations, providers, usage
from conversations.gateway import admin as gateway
from conversations.membership import admin as membership

__all__ = ["accounts", "conversations", "gateway", "membership", "providers", "usage"]
