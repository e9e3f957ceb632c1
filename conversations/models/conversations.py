"""Conversations, their messages (a tree: edits and regenerations branch), and a user's
defaults for new conversations."""

import json
import uuid
from collections import defaultdict

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models.counts import TokenCounts
from conversations.models.providers import LanguageModel


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
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences",
        verbose_name=_("user"),
    )  # fmt: skip
    model = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("model"),
    )  # fmt: skip
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
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations",
        verbose_name=_("owner"),
    )  # fmt: skip
    title = models.CharField(_("title"), max_length=200, blank=True)
    system_prompt = models.TextField(_("system prompt"), blank=True)
    model = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("model")
    )
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    # The message whose branch the user last chose to see (`< 2 / 3 >`); null: the newest.
    shown = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("message on show"),
    )  # fmt: skip
    # True while the title is Confab's (the first message, then a generated one); a title
    # the user gives is never overwritten.
    auto_title = models.BooleanField(_("title by Confab"), default=True)
    # Server tools in this conversation: all off, or some (their names, switched off); and
    # the tools the user let run without asking here ("always allow in this conversation").
    tools_off = models.BooleanField(_("no tools"), default=False)
    tools_switched_off = models.JSONField(_("tools switched off"), default=list, blank=True)
    tools_always_allowed = models.JSONField(_("tools always allowed"), default=list, blank=True)
    # The project it belongs to, if any: its instructions, files and defaults apply.
    project = models.ForeignKey(
        "Project",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
        verbose_name=_("project"),
    )
    pinned = models.BooleanField(_("pinned"), default=False)
    archived = models.BooleanField(_("archived"), default=False)
    # Deleted, but restorable for CONFAB_UNDO_DELETE_S; then purged.
    deleted = models.DateTimeField(_("deleted"), null=True, blank=True)
    created = models.DateTimeField(_("created"), default=timezone.now)
    updated = models.DateTimeField(_("updated"), default=timezone.now)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
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
            "project": str(self.project_id) if self.project_id else None,
        }

    def export(self):
        """The export format (DESIGN.md §4): the owner's download, and a data request's."""
        return {
            "conversation": self.to_dict(),
            "messages": [
                m.to_dict() for m in self.messages.select_related("model").order_by("created")
            ],
        }

    def branch(self):
        """The messages shown: the branch through `shown`, else the newest one."""
        messages = self.messages.select_related("model__provider").order_by("created")
        return branch_through(messages, self.shown_id)


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


class MessageQuerySet(models.QuerySet):
    def for_user(self, user):
        """The only way to reach messages: those of the user's conversations."""
        return self.filter(conversation__in=Conversation.objects.for_user(user))


# The namespace of stored client ids (Message.client_key); never to change.
CLIENT_IDS = uuid.UUID("6a0f3c52-8d1e-4b7a-9c25-1f4e8b3d7a60")
# A tool result longer than this (in characters) is shown folded.
LONG_RESULT = 600


class ToolApproval(models.TextChoices):
    """Where a tool call stands with the user: run without asking, or asked about."""

    AUTO = "auto", _("ran without asking")
    PENDING = "pending", _("waiting for approval")
    APPROVED = "approved", _("approved")
    DENIED = "denied", _("denied")
    EXPIRED = "expired", _("not answered in time")


class Message(TokenCounts):
    class Role(models.TextChoices):
        SYSTEM = "system", _("system")
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")
        TOOL = "tool", _("tool")

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        CANCELLED = "cancelled", _("stopped")
        FAILED = "failed", _("failed")
        INTERRUPTED = "interrupted", _("interrupted")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages",
        verbose_name=_("conversation"),
    )  # fmt: skip
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        verbose_name=_("answers"),
    )  # fmt: skip
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    content = models.TextField(_("content"), blank=True)
    reasoning = models.TextField(_("reasoning"), blank=True)
    tool_calls = models.JSONField(_("tool calls"), default=list, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.COMPLETE
    )
    finish_reason = models.CharField(_("finish reason"), max_length=32, blank=True)
    # A tool message: the call it answers (its `tool_calls` holds that one call), the
    # tool's name, whether its result is an error, and how its approval went.
    tool_call_id = models.CharField(_("tool call id"), max_length=100, blank=True)
    tool_name = models.CharField(_("tool"), max_length=64, blank=True)
    tool_error = models.BooleanField(_("tool error"), default=False)
    approval = models.CharField(
        _("approval"), max_length=8, choices=ToolApproval.choices, blank=True
    )
    # The passages of files a reply was given (Passage.citation), numbered as the reply
    # refers to them ([1], [2]…); a tool message's: the passages its result held.
    citations = models.JSONField(_("citations"), default=list, blank=True)
    # A user message's files, as sent: id, name, size and kind of each (its File rows may
    # go; this stays what the message showed).
    attachments = models.JSONField(_("attachments"), default=list, blank=True)
    # The stop sequence that ended the reply, when the provider says which (vLLM, SGLang).
    stop_sequence = models.CharField(_("stop sequence"), max_length=200, blank=True)
    # What went wrong, in detail (the log, the request inspector, the export); what a user
    # reads is `error_text`, from the kind of failure in `failure` (settle.failure_of).
    error = models.TextField(_("error"), blank=True)
    failure = models.CharField(_("failure"), max_length=32, blank=True)
    model = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("model")
    )
    model_name = models.CharField(_("model id"), max_length=200, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    # The upstream request that produces this reply: the replies of one request (n > 1)
    # share it, and so does the request's one row in the usage ledger.
    request_id = models.UUIDField(_("request id"), null=True, blank=True, editable=False)
    # A reply's request body as sent upstream, for "view request". The conversation's own
    # messages are left out (they are this reply's ancestors, rebuilt when shown), so a long
    # conversation does not store its history once per reply; a system message is kept.
    request = models.JSONField(_("request"), default=dict, blank=True)
    usage_estimated = models.BooleanField(_("usage estimated"), default=False)
    cost = models.DecimalField(_("cost"), max_digits=14, decimal_places=8, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    ttft_ms = models.PositiveIntegerField(_("time to first token (ms)"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    # The `client_id` of the send that made it, as stored: client_key(owner, id).
    client_id = models.UUIDField(null=True, blank=True, unique=True)
    created = models.DateTimeField(_("created"), default=timezone.now)
    completed = models.DateTimeField(_("completed"), null=True, blank=True)
    # When a running reply last wrote its text: the reaper's evidence that its runner lives.
    checkpointed = models.DateTimeField(_("last saved"), null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    @staticmethod
    def client_key(user_id, client_id):
        """A send's `client_id` as stored: the user's id and it, hashed into one UUID. Ids
        are per user, so the same one from two users names two sends, and no answer can
        tell a user whether someone else has used an id."""
        return uuid.uuid5(CLIENT_IDS, f"{user_id}:{client_id}")

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
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
        return f"{self.get_role_display()}: {self.content[:50]}"

    @property
    def model_label(self):
        """The model as people know it: its display name, else the id it was asked by."""
        model = self.model if self.model_id is not None else None
        return (model.display_name if model else "") or self.model_name

    @property
    def is_streaming(self):
        return self.status == self.Status.STREAMING

    @property
    def cost_display(self):
        """The cost with its currency, without trailing zeros or exponent: "USD 0.0012"."""
        if not self.cost:
            return ""
        return f"{self.currency or 'USD'} {self.cost.normalize():f}"

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
    def waits_for_approval(self):
        return self.approval == ToolApproval.PENDING and self.is_streaming

    @property
    def result_is_long(self):
        """A tool's result long enough to show folded."""
        return len(self.content) > LONG_RESULT or self.content.count("\n") > 12

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
            "model_length": _("stopped: token limit reached"),  # Mistral
            "content_filter": _("stopped by the provider's content filter"),
            "sensitive": _("stopped by the provider's content filter"),  # Zhipu GLM
            "tool_calls": _("the model asked to call a tool"),
        }.get(self.finish_reason, "")

    @property
    def error_text(self):
        """What went wrong, as a sentence for the user in their language: the provider's
        failure in plain words, naming the provider; other errors are sentences already."""
        if not self.failure:
            return _(self.error) if self.error else ""  # Confab's own, stored in English
        kind, _slash, status = self.failure.partition("/")
        provider = self.model.provider.name if self.model else _("the provider")
        if kind == "http_error" and status in ("401", "403"):
            sentence = _("The provider “%(provider)s” refused the request: its key may be wrong.")
        elif kind == "http_error" and status == "429":
            sentence = _("The provider “%(provider)s” is busy or over its limit.")
        elif kind == "http_error" and status.startswith("5"):
            sentence = _("The provider “%(provider)s” had a problem answering.")
        else:
            sentence = {
                "unreachable": _("Could not reach the provider “%(provider)s”."),
                "connection": _("The connection to the provider “%(provider)s” broke."),
                "timeout": _("The provider “%(provider)s” took too long to answer."),
                "cut": _("The provider “%(provider)s” stopped before the reply was finished."),
                "http_error": _("The provider “%(provider)s” refused the request."),
                "provider_error": _("The provider “%(provider)s” reported an error."),
            }.get(kind, _("The provider “%(provider)s” sent an answer Confab could not read."))
        return _("%(what)s Try again, or ask an administrator.") % {
            "what": sentence % {"provider": provider}
        }

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
        return {**self.token_counts(), "estimated": self.usage_estimated}

    def to_dict(self):
        """The MESSAGE object of the websocket protocol and the export (DESIGN.md §4); with
        its HTML, rendering.finished_message."""
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
            "model_label": self.model_label or None,
            "params": self.params,
            "usage": self.usage_dict(),
            "cost": f"{self.cost:f}" if self.cost is not None else None,  # never "1E-8"
            "currency": self.currency or None,
            "created": self.created.isoformat(),
            "completed": self.completed.isoformat() if self.completed else None,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            # A tool message's: the call it answers, the tool, whether its result is an
            # error, and its approval ("" for other messages).
            "tool_call_id": self.tool_call_id or None,
            "name": self.tool_name or None,
            "tool_error": self.tool_error,
            "approval": self.approval or None,
            "citations": self.citations,
            "files": self.attachments,
        }
