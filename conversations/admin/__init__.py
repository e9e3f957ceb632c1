"""Django admin, by what an administrator runs: providers and models, conversations (read
only), usage and quotas, users and site settings. Importing the modules registers them."""

from conversations.admin import accounts, conversations, providers, usage

__all__ = ["accounts", "conversations", "providers", "usage"]
