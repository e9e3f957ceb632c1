"""Providers, the models they offer, and what those models cost."""

import uuid
from decimal import Decimal

from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.fields import EncryptedTextField, json_object_field

PER_MILLION = Decimal(1_000_000)


class Provider(models.Model):
    """An OpenAI-compatible endpoint and the key to call it."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    # A CharField: URLField's validator refuses hosts without a dot ("http://vllm:8000/v1").
    base_url = models.CharField(
        _("base URL"), max_length=200, help_text=_("For example https://api.openai.com/v1")
    )
    api_key = EncryptedTextField(_("API key"), blank=True)
    extra_headers = json_object_field(
        _("extra headers"),
        _('Sent with every request, for example {"HTTP-Referer": "https://chat.example"}.'),
    )
    first_byte_timeout_s = models.PositiveIntegerField(
        _("first byte timeout (s)"),
        null=True,
        blank=True,
        help_text=_("How long to wait for the first token. Reasoning models may need minutes."),
    )
    idle_timeout_s = models.PositiveIntegerField(
        _("idle timeout (s)"),
        null=True,
        blank=True,
        help_text=_("How long a stream may go silent between two chunks."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def add_models(self, upstream_ids, *, enabled=True):
        """Add the models the provider lists; models already known keep their settings."""
        known = set(self.models.values_list("upstream_id", flat=True))
        return LanguageModel.objects.bulk_create(
            LanguageModel(provider=self, upstream_id=upstream_id, enabled=enabled)
            for upstream_id in dict.fromkeys(upstream_ids)
            if upstream_id not in known
        )

    @property
    def api_key_hint(self):
        """What an administrator may see of the key: its last four characters."""
        if not self.api_key:
            return _("not set")
        return _("set, ends in …%(tail)s") % {"tail": self.api_key[-4:]}


class LanguageModelQuerySet(models.QuerySet):
    def available(self):
        return self.filter(enabled=True, provider__enabled=True).select_related("provider")

    def available_to(self, user):
        """Enabled models the user may use: open to all, or to one of their groups."""
        open_to_all = models.Q(groups__isnull=True)
        return self.available().filter(open_to_all | models.Q(groups__user=user)).distinct()


class LanguageModel(models.Model):
    """A model offered by a provider, with its limits and prices."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    upstream_id = models.CharField(_("upstream id"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    max_output_tokens = models.PositiveIntegerField(
        _("max output tokens"), null=True, blank=True, help_text=_("Empty: no limit of ours.")
    )
    context_window = models.PositiveIntegerField(
        _("context window (tokens)"), null=True, blank=True
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        verbose_name=_("groups"),
        help_text=_("Only members of these groups may use the model. None: everyone."),
    )
    supports_tools = models.BooleanField(_("tools"), default=True)
    supports_json = models.BooleanField(_("JSON mode"), default=True)
    supports_reasoning = models.BooleanField(_("reasoning"), default=False)
    supports_n = models.BooleanField(_("several choices (n)"), default=True)
    default_params = json_object_field(
        _("default parameters"),
        _('Request fields used unless a conversation sets them, e.g. {"temperature": 0.7}.'),
    )
    extra_body = json_object_field(
        _("extra body fields"),
        _(
            "Fields this provider understands beyond the standard API, sent as they are, "
            'e.g. {"reasoning_effort": "high"} or {"top_k": 40}.'
        ),
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = LanguageModelQuerySet.as_manager()

    class Meta:
        verbose_name = _("model")
        ordering = ["provider__name", "display_name", "upstream_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "upstream_id"], name="unique_upstream_id")
        ]

    def __str__(self):
        return self.display_name or self.upstream_id

    def price_at(self, when):
        """The price in effect at `when`: a later price change never rewrites the past."""
        return Price.objects.in_effect(self.pk, when)


class PriceQuerySet(models.QuerySet):
    def in_effect(self, model_id, when):
        """The model's price in effect at `when`, or None."""
        prices = self.filter(model_id=model_id, effective_from__lte=when)
        return prices.order_by("-effective_from").first()


class Price(models.Model):
    """A model's price per million tokens from a date on."""

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(_("effective from"), default=timezone.now)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    input = models.DecimalField(
        _("input per million tokens"), max_digits=12, decimal_places=6, default=0
    )
    cached_input = models.DecimalField(
        _("cached input per million tokens"), max_digits=12, decimal_places=6, default=0
    )
    output = models.DecimalField(
        _("output per million tokens"), max_digits=12, decimal_places=6, default=0
    )

    objects = PriceQuerySet.as_manager()

    class Meta:
        verbose_name = _("price")
        ordering = ["-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_a_time")
        ]

    def __str__(self):
        return f"{self.currency} {self.input}/{self.output} from {self.effective_from:%Y-%m-%d}"

    def cost(self, usage):
        """What a request cost at this price, from its token usage."""
        uncached = max(usage.prompt_tokens - usage.cached_tokens, 0)
        return (
            uncached * self.input
            + usage.cached_tokens * self.cached_input
            + usage.completion_tokens * self.output
        ) / PER_MILLION
