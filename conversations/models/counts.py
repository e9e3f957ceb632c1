"""Token counts, in the names of the API's `usage` object: a reply's and a ledger row's."""

from django.db import models

from conversations.usage import Usage


class TokenCounts(models.Model):
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    def token_counts(self):
        """The counts, by name."""
        return {name: getattr(self, name) for name in Usage.COUNTS}
