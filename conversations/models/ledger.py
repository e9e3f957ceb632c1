"""The usage ledger and the quotas it is checked against."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models.conversations import Conversation, Message
from conversations.models.counts import TokenCounts
from conversations.models.keys import ApiKey
from conversations.models.providers import LanguageModel, Provider


class UsageRecord(TokenCounts):
    """The ledger: one row per upstream request, so nothing counts twice. A request in
    flight holds its reservation here (status streaming) until it settles."""

    class Source(models.TextChoices):
        CHAT = "chat", _("chat")
        API = "api", _("API")
        TITLE = "title", _("title")
        EMBEDDING = "embedding", _("embeddings")

    request_id = models.UUIDField(_("request id"), unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("user"),
    )  # fmt: skip
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("conversation"),
    )  # fmt: skip
    message = models.ForeignKey(
        Message, null=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("reply")
    )
    provider = models.ForeignKey(
        Provider, null=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("provider"),
    )  # fmt: skip
    model = models.ForeignKey(
        LanguageModel, null=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("model"),
    )  # fmt: skip
    model_name = models.CharField(_("model id"), max_length=200)
    status = models.CharField(_("status"), max_length=16, choices=Message.Status.choices)
    estimated = models.BooleanField(_("estimated"), default=False)
    # False: no connection to the provider could be made, so nothing was sent and nothing
    # used; the row costs nothing and says so.
    reached_provider = models.BooleanField(_("reached the provider"), default=True)
    cost = models.DecimalField(_("cost"), max_digits=14, decimal_places=8, default=0)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    # What the provider said the request cost (OpenRouter's usage.cost), when it says.
    provider_cost = models.DecimalField(
        _("cost the provider reported"), max_digits=14, decimal_places=8, null=True, blank=True
    )
    ttft_ms = models.PositiveIntegerField(_("time to first token (ms)"), null=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True)
    created = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    source = models.CharField(
        _("source"), max_length=16, choices=Source.choices, default=Source.CHAT
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("API key"),
    )  # fmt: skip

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        ordering = ["-created"]

    def __str__(self):
        return _("%(model)s, %(count)s tokens") % {
            "model": self.model_name,
            "count": f"{self.total_tokens:,}",
        }


class Quota(models.Model):
    """A limit on a user's usage per period, set for the user or for each member of a group.

    Usage counts from the start of the period (in the server's time zone), or from the
    last reset. Extra allowance granted by an administrator lasts until `extra_until`.
    """

    class Period(models.TextChoices):
        DAY = "day", _("day")
        WEEK = "week", _("week")
        MONTH = "month", _("month")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="quotas", verbose_name=_("user"),
    )  # fmt: skip
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas",
        verbose_name=_("group"),
        help_text=_("Applies to each member of the group."),
    )  # fmt: skip
    period = models.CharField(_("period"), max_length=8, choices=Period, default=Period.MONTH)
    max_tokens = models.PositiveBigIntegerField(_("tokens"), null=True, blank=True)
    max_cost = models.DecimalField(
        _("money"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    max_concurrent = models.PositiveSmallIntegerField(_("replies at once"), null=True, blank=True)
    reset_at = models.DateTimeField(_("period reset at"), null=True, blank=True)
    extra_tokens = models.PositiveBigIntegerField(_("extra tokens"), default=0)
    extra_cost = models.DecimalField(_("extra money"), max_digits=12, decimal_places=4, default=0)
    extra_until = models.DateTimeField(_("extra allowance until"), null=True, blank=True)

    class Meta:
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=True) ^ models.Q(group__isnull=True),
                name="quota_for_a_user_or_a_group",
            )
        ]

    def __str__(self):
        return _("%(who)s per %(period)s") % {
            "who": self.user or self.group,
            "period": self.get_period_display(),
        }

    def clean(self):
        if (self.user_id is None) == (self.group_id is None):
            raise ValidationError(_("Choose a user or a group: one of them, not both."))
