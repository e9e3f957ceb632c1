"""Token counts, in the names of the API's `usage` object: a reply's and a ledger row's."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from conversations.usage import Usage


class TokenCounts(models.Model):
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), default=0)
    total_tokens = models.PositiveIntegerField(_("total tokens"), default=0)
    cached_tokens = models.PositiveIntegerField(_("cached tokens"), default=0)
    reasoning_tokens = models.PositiveIntegerField(_("reasoning tokens"), default=0)

    class Meta:
        abstract = True

    def token_counts(self):
        """The counts, by name."""
        return {name: getattr(self, name) for name in Usage.COUNTS}
