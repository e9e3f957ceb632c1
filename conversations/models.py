import json
import uuid
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.fields import EncryptedTextField

PER_MILLION = Decimal(1_000_000)


class SiteSettings(models.Model):
    """One row of settings an administrator changes at run time."""

    signup_open = models.BooleanField(
        _("anyone may sign up"),
        default=False,
        help_text=_("When off, only an administrator can create accounts."),
    )
    title_model = models.ForeignKey(
        "LanguageModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("model for titles"),
        help_text=_("Writes each new conversation's title. Empty: the conversation's own model."),
    )

    class Meta:
        verbose_name = verbose_name_plural = _("site settings")

    def __str__(self):
        return str(_("Site settings"))

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]


class Provider(models.Model):
    """An OpenAI-compatible endpoint and the key to call it."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    # A CharField: URLField's validator refuses hosts without a dot ("http://vllm:8000/v1").
    base_url = models.CharField(
        _("base URL"), max_length=200, help_text=_("For example https://api.openai.com/v1")
    )
    api_key = EncryptedTextField(_("API key"), blank=True)
    extra_headers = models.JSONField(
        _("extra headers"),
        default=dict,
        blank=True,
        help_text=_(
            'Sent with every request, for example {"HTTP-Referer": "https://chat.example"}.'
        ),
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
    default_params = models.JSONField(
        _("default parameters"),
        default=dict,
        blank=True,
        help_text=_(
            'Request fields used unless a conversation sets them, e.g. {"temperature": 0.7}.'
        ),
    )
    extra_body = models.JSONField(
        _("extra body fields"),
        default=dict,
        blank=True,
        help_text=_(
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
        return self.prices.filter(effective_from__lte=when).order_by("-effective_from").first()


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


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user):
        """The only way to reach conversations: those the user owns."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(owner=user, deleted__isnull=True)

    def deleted_by(self, user):
        """The user's deleted conversations, restorable until they are purged."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(owner=user, deleted__isnull=False)

    def with_generating(self):
        """Mark the conversations that have a reply being generated."""
        streaming = Message.objects.filter(
            conversation=models.OuterRef("pk"), status=Message.Status.STREAMING
        )
        return self.annotate(generating=models.Exists(streaming))


class Preferences(models.Model):
    """A user's defaults for new conversations: model, system prompt and request fields."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )
    model = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    system_prompt = models.TextField(_("system prompt"), blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)

    class Meta:
        verbose_name = _("preferences")
        verbose_name_plural = _("preferences")

    def __str__(self):
        return str(self.user)

    @classmethod
    def of(cls, user):
        """The user's defaults; empty, and not yet saved, until they first save some."""
        return cls.objects.filter(user=user).select_related("model").first() or cls(user=user)


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    system_prompt = models.TextField(_("system prompt"), blank=True)
    model = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.SET_NULL)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    # The message whose branch the user last chose to see (`< 2 / 3 >`); null: the newest.
    shown = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # True while the title is Confab's (the first message, then a generated one); a title
    # the user gives is never overwritten.
    auto_title = models.BooleanField(default=True)
    pinned = models.BooleanField(_("pinned"), default=False)
    archived = models.BooleanField(_("archived"), default=False)
    # Deleted, but restorable for CONFAB_UNDO_DELETE_S; then purged.
    deleted = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated"]
        indexes = [
            models.Index(fields=["owner", "archived", "-pinned", "-updated"], name="sidebar")
        ]

    def __str__(self):
        return self.title or str(_("New conversation"))

    def to_dict(self):
        return {
            "id": str(self.id),
            "title": self.title,
            "pinned": self.pinned,
            "archived": self.archived,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "model": self.model.upstream_id if self.model else None,
            "system_prompt": self.system_prompt,
            "params": self.params,
        }

    def branch(self):
        """The messages shown: the branch through `shown`, else the newest one."""
        return branch_through(self.messages.order_by("created"), self.shown_id)


def branch_through(messages, through=None):
    """From messages in creation order, the path from the root through `through` (a
    message id), then down the newest child each time; the newest branch without one.

    Each message shown gets `siblings`, the ids of its parent's children of its role, in
    order, for the `< 2 / 3 >` switcher.
    """
    children, by_id = defaultdict(list), {}
    for message in messages:
        children[message.parent_id].append(message)
        by_id[message.id] = message
    path = []
    node = by_id.get(through)
    while node is not None:  # up from the chosen message to the root
        path.append(node)
        node = by_id.get(node.parent_id)
    path.reverse()
    while children.get(path[-1].id if path else None):  # down by the newest child
        path.append(children[path[-1].id if path else None][-1])
    for message in path:
        message.siblings = [m.id for m in children[message.parent_id] if m.role == message.role]
    return path


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        CANCELLED = "cancelled", _("stopped")
        FAILED = "failed", _("failed")
        INTERRUPTED = "interrupted", _("interrupted")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=32, blank=True)
    # The stop sequence that ended the reply, when the provider says which (vLLM, SGLang).
    stop_sequence = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    model = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.SET_NULL)
    model_name = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    # A reply's request body as sent upstream, for "view request". The conversation's own
    # messages are left out (they are this reply's ancestors, rebuilt when shown), so a long
    # conversation does not store its history once per reply; a system message is kept.
    request = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    client_id = models.UUIDField(null=True, blank=True, unique=True)
    created = models.DateTimeField(default=timezone.now)
    completed = models.DateTimeField(null=True, blank=True)
    # When a running reply last wrote its text: the reaper's evidence that its runner lives.
    checkpointed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]
        indexes = [
            models.Index(fields=["conversation", "created"], name="message_thread"),
            models.Index(
                fields=["checkpointed"],
                condition=models.Q(status="streaming"),
                name="message_streaming",
            ),
        ]

    def __str__(self):
        return f"{self.role}: {self.content[:50]}"

    @property
    def is_streaming(self):
        return self.status == self.Status.STREAMING

    @property
    def cost_display(self):
        """The cost without trailing zeros or exponent: "0.0012", "0.00000001"."""
        return f"{self.cost.normalize():f}" if self.cost else ""

    def sibling_switch(self):
        """(position, count, previous id, next id) among siblings, or None when alone."""
        siblings = getattr(self, "siblings", [self.id])
        if len(siblings) < 2:
            return None
        i = siblings.index(self.id)
        previous = siblings[i - 1] if i > 0 else None
        following = siblings[i + 1] if i + 1 < len(siblings) else None
        return {"position": i + 1, "count": len(siblings), "previous": previous, "next": following}

    def descendants(self, family):
        """This message and everything under it, among `family` (its conversation's)."""
        children = defaultdict(list)
        for message in family:
            children[message.parent_id].append(message)
        found, todo = [], [self]
        while todo:
            message = todo.pop()
            found.append(message)
            todo.extend(children[message.id])
        return found

    @property
    def duration_s(self):
        return self.duration_ms / 1000 if self.duration_ms is not None else None

    @property
    def finish_note(self):
        """Why a reply ended, in words, when it is not the usual end."""
        if self.stop_sequence:
            return _("stopped at the stop sequence “%(stop)s”") % {"stop": self.stop_sequence}
        return {
            "length": _("stopped: token limit reached"),
            "content_filter": _("stopped by the provider's content filter"),
            "tool_calls": _("the model asked to call a tool"),
        }.get(self.finish_reason, "")

    @property
    def expects_json(self):
        response_format = self.params.get("response_format") or {}
        return response_format.get("type") in ("json_object", "json_schema")

    @property
    def html(self):
        from conversations.rendering import render_json, render_markdown

        if self.expects_json and self.content:
            return render_json(self.content)
        return render_markdown(self.content)

    @property
    def tool_call_blocks(self):
        """Tool calls as a person reads them: the name, and the arguments pretty-printed."""
        blocks = []
        for call in self.tool_calls:
            function = call.get("function") or {}
            arguments = function.get("arguments") or ""
            try:
                arguments = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
            except ValueError:
                pass
            blocks.append({"name": function.get("name") or "?", "arguments": arguments})
        return blocks

    def usage_dict(self):
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.usage_estimated,
        }

    def to_dict(self, *, with_html=False):
        """The MESSAGE object of the websocket protocol and the export (DESIGN.md §4).

        `with_html` adds the server's rendering of the message: the template partial the
        page itself uses, so a reply finished live looks as it does after a reload.
        """
        if with_html:
            from django.template.loader import render_to_string

            if not hasattr(self, "siblings"):  # for the `< 2 / 3 >` switcher
                self.siblings = list(
                    Message.objects.filter(parent_id=self.parent_id, role=self.role)
                    .filter(conversation_id=self.conversation_id)
                    .order_by("created")
                    .values_list("id", flat=True)
                )

            html = render_to_string("conversations/chat.html#message", {"message": self})
            return {**self.to_dict(), "html": html}
        return {
            "id": str(self.id),
            "conversation": str(self.conversation_id),
            "parent": str(self.parent_id) if self.parent_id else None,
            "role": self.role,
            "content": self.content,
            "reasoning": self.reasoning,
            "tool_calls": self.tool_calls,
            "status": self.status,
            "finish_reason": self.finish_reason or None,
            "error": self.error or None,
            "model": self.model_name or None,
            "params": self.params,
            "usage": self.usage_dict(),
            "cost": f"{self.cost:f}" if self.cost is not None else None,  # never "1E-8"
            "created": self.created.isoformat(),
            "completed": self.completed.isoformat() if self.completed else None,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
        }


class UsageRecord(models.Model):
    """The ledger: one row per upstream request, written once, so nothing counts twice."""

    request_id = models.UUIDField(unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.ForeignKey(Message, null=True, on_delete=models.SET_NULL, related_name="+")
    provider = models.ForeignKey(Provider, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.ForeignKey(LanguageModel, null=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    currency = models.CharField(max_length=3, default="USD")
    # What the provider said the request cost (OpenRouter's usage.cost), when it says.
    provider_cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True)
    duration_ms = models.PositiveIntegerField(null=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("usage record")
        ordering = ["-created"]

    def __str__(self):
        return f"{self.model_name} {self.total_tokens} tokens"


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
        related_name="quotas",
    )  # fmt: skip
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas",
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
