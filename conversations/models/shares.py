"""Share links: a read-only snapshot of one branch of a conversation, at `/s/<token>/`.

A share copies what it shows when it is made (Share.take), so nothing said later, nor any
edit, reaches it, and its page never touches the conversation itself: a reader holds the
token of a snapshot, never a way to the conversation.
"""

import secrets
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models.conversations import Conversation, Message, branch_through
from conversations.models.providers import LanguageModel
from conversations.usage import Usage


class ShareQuerySet(models.QuerySet):
    def live(self):
        """Shares a link still opens: not revoked, not expired, their conversation not
        deleted (restoring the conversation brings them back)."""
        return self.filter(revoked__isnull=True, conversation__deleted__isnull=True).filter(
            models.Q(expires__isnull=True) | models.Q(expires__gt=timezone.now())
        )

    def for_user(self, user):
        """The shares a user made: the only ones they may list or revoke."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(owner=user)


class Share(models.Model):
    class Audience(models.TextChoices):
        MEMBERS = "members", _("People signed in to this Confab")
        ANYONE = "anyone", _("Anyone with the link")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # 256 random bits, URL-safe: the link is the only key to the snapshot, so it cannot be
    # guessed or enumerated.
    token = models.CharField(max_length=64, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="shares", editable=False
    )
    audience = models.CharField(
        _("who can read it"), max_length=16, choices=Audience.choices, default=Audience.MEMBERS
    )
    title = models.CharField(_("title"), max_length=200, blank=True, editable=False)
    # Copied only when the owner chose to show it: what is not shown is not kept here either.
    system_prompt = models.TextField(_("system prompt"), blank=True, editable=False)
    show_costs = models.BooleanField(_("show tokens and costs"), default=False)
    # The branch as it was, one plain object per message (Share.take); never the original
    # messages' ids, requests or parameters.
    messages = models.JSONField(default=list, editable=False)
    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked = models.DateTimeField(_("revoked"), null=True, blank=True)

    objects = ShareQuerySet.as_manager()

    class Meta:
        verbose_name = _("shared link")
        verbose_name_plural = _("shared links")
        ordering = ["-created"]

    def __str__(self):
        return self.title or str(_("New conversation"))

    @classmethod
    def take(cls, conversation, *, through=None, show_system_prompt=False, **fields):
        """A new share of the conversation's branch through `through` (a message id; the
        branch the conversation shows when None), as it is now. Replies still being
        generated, and what follows them, are left out: a snapshot holds finished text."""
        messages = conversation.messages.order_by("created")
        branch = branch_through(messages, through or conversation.shown_id)
        kept = []
        for message in branch:
            if message.is_streaming:
                break
            kept.append(_snapshot(message))
        return cls.objects.create(
            token=secrets.token_urlsafe(32),
            owner=conversation.owner,
            conversation=conversation,
            title=str(conversation),
            system_prompt=conversation.system_prompt if show_system_prompt else "",
            messages=kept,
            **fields,
        )

    @property
    def is_live(self):
        expired = self.expires is not None and self.expires <= timezone.now()
        return self.revoked is None and not expired and self.conversation.deleted is None

    def copy_for(self, user):
        """A new conversation of `user`'s holding the snapshot, to continue it. The copy
        carries the text only: the tokens and costs were the owner's, and so were the
        requests. Its model is the last reply's when the user may use it."""
        available = LanguageModel.objects.available_to(user)
        names = [m["model_name"] for m in self.messages if m.get("model_name")]
        model = available.filter(upstream_id=names[-1]).first() if names else None
        start = timezone.now()
        with transaction.atomic():
            conversation = Conversation.objects.create(
                owner=user,
                title=self.title,
                auto_title=False,
                system_prompt=self.system_prompt,
                model=model,
                created=start,
                updated=start,
            )
            parent = None
            for i, snapshot in enumerate(self.messages):
                message = _message(snapshot)
                for name in Usage.COUNTS:
                    setattr(message, name, 0)
                message.usage_estimated = False
                message.cost = None
                # One microsecond apart: the thread is in creation order.
                message.created = start + timedelta(microseconds=i)
                message.conversation, message.parent = conversation, parent
                message.save()
                parent = message
        return conversation

    def shown_messages(self):
        """The snapshot as unsaved Messages, for the templates that show messages."""
        return [_message(snapshot) for snapshot in self.messages]


# What a snapshot keeps of a message: what the page shows, nothing that leads elsewhere.
_FIELDS = (
    "role", "content", "reasoning", "tool_calls", "status", "finish_reason", "stop_sequence",
    "error", "model_name", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "reasoning_tokens", "usage_estimated", "duration_ms",
)  # fmt: skip


def _snapshot(message):
    snapshot = {name: getattr(message, name) for name in _FIELDS}
    snapshot["cost"] = f"{message.cost:f}" if message.cost is not None else None
    snapshot["json"] = message.expects_json
    snapshot["created"] = message.created.isoformat()
    return snapshot


def _message(snapshot):
    fields = {name: snapshot[name] for name in _FIELDS if name in snapshot}
    if snapshot.get("json"):
        fields["params"] = {"response_format": {"type": "json_object"}}  # shown as JSON
    created = datetime.fromisoformat(snapshot["created"]) if "created" in snapshot else None
    cost = Decimal(snapshot["cost"]) if snapshot.get("cost") is not None else None
    return Message(cost=cost, created=created, **fields)
