"""Providers, the models they offer, and what those models cost."""

import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.fields import EncryptedTextField, json_object_field

PER_MILLION = Decimal(1_000_000)


class Provider(models.Model):
    """An OpenAI-compatible endpoint and the key to call it, and whether it answers."""

    class Status(models.TextChoices):
        READY = "ready", _("reachable")
        # The bundled local model while `serve` builds and starts it.
        PREPARING = "preparing", _("preparing")
        UNREACHABLE = "unreachable", _("unreachable")

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
    # Kept by model discovery (conversations.discovery): an unreachable provider is tried
    # again in the background; `status_reason` is a key of upstream.client.REASONS, or
    # "http" or "format", and `status_detail` the error as logged.
    status = models.CharField(
        _("status"), max_length=16, choices=Status, default=Status.READY, editable=False
    )
    status_reason = models.CharField(max_length=16, blank=True, editable=False)
    status_detail = models.CharField(max_length=500, blank=True, editable=False)
    checked = models.DateTimeField(_("last checked"), null=True, blank=True, editable=False)
    # The small demo model `make run` builds and starts when no provider is configured.
    bundled = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def status_text(self):
        """The provider's state in words, in the reader's language."""
        if self.status != self.Status.UNREACHABLE:
            return self.get_status_display()
        return _("unreachable: %(reason)s") % {"reason": self.reason_text}

    @property
    def reason_text(self):
        """Why it could not be reached, with its host, in the reader's language."""
        reasons = {
            "refused": _("%(host)s refused the connection (is the server running, on that port?)"),
            "dns": _("the host name %(host)s could not be found (DNS)"),
            "certificate": _("the TLS certificate of %(host)s could not be verified"),
            "tls": _("the TLS handshake with %(host)s failed"),
            "timeout": _("%(host)s did not answer in time"),
            "network": _("the network connection to %(host)s failed"),
            "http": _("%(host)s refused to list its models (check the API key and base URL)"),
            "format": _("%(host)s answered, but not with an OpenAI-style list of models"),
        }
        if self.bundled and not self.status_reason:
            return _("the bundled local model could not be started")
        reason = reasons.get(self.status_reason, _("%(host)s could not be reached"))
        return reason % {"host": self.host}

    @property
    def host(self):
        """Where it is: the host (and port) of its base URL, never credentials in it."""
        return urlsplit(self.base_url).netloc.rpartition("@")[2] or self.base_url

    def add_models(self, upstream_ids, *, enabled=True):
        """Add the models the provider lists; models already known keep their settings."""
        known = set(self.models.values_list("upstream_id", flat=True))
        # Conflicts ignored: several server processes may discover the same models at once.
        return LanguageModel.objects.bulk_create(
            (
                LanguageModel(provider=self, upstream_id=upstream_id, enabled=enabled)
                for upstream_id in dict.fromkeys(upstream_ids)
                if upstream_id not in known
            ),
            ignore_conflicts=True,
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
    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, related_name="models", verbose_name=_("provider")
    )
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
    created = models.DateTimeField(_("created"), auto_now_add=True)

    objects = LanguageModelQuerySet.as_manager()

    class Meta:
        verbose_name = _("model")
        verbose_name_plural = _("models")
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

    model = models.ForeignKey(
        LanguageModel, on_delete=models.CASCADE, related_name="prices", verbose_name=_("model")
    )
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
        verbose_name_plural = _("prices")
        ordering = ["-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_a_time")
        ]

    def __str__(self):
        return _("%(currency)s %(input)s / %(output)s per million tokens, from %(date)s") % {
            "currency": self.currency,
            "input": self.input,
            "output": self.output,
            "date": f"{self.effective_from:%Y-%m-%d}",
        }

    def cost(self, usage):
        """What a request cost at this price, from its token usage."""
        uncached = max(usage.prompt_tokens - usage.cached_tokens, 0)
        return (
            uncached * self.input
            + usage.cached_tokens * self.cached_input
            + usage.completion_tokens * self.output
        ) / PER_MILLION
