"""Django admin, by what an administrator runs: providers and models, conversations
(metadata only, unless the site allows reading: privacy), tools, projects and files, usage
and quotas, users and site settings, invitations, shared links. Importing the modules
registers them."""

from conversations.admin import accounts, providers, tools, usage
from conversations.gateway import admin as gateway
from conversations.membership import admin as membership
from conversations.privacy import admin as privacy
from conversations.projects import admin as projects
from conversations.shares import admin as shares

__all__ = [
    "accounts",
    "gateway",
    "membership",
    "privacy",
    "projects",
    "providers",
    "shares",
    "tools",
    "usage",
]
