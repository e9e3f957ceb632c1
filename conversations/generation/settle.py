"""The one ending of every upstream request: settle().

However a request ends (complete, stopped, failed, cut, found orphaned by the reaper, or a
title written), settle() writes its replies, its one row in the usage ledger (turning the
reservation admission made into what the request cost) and the `message.done` payloads, in
one transaction. It is idempotent: only replies and a reservation still streaming are
written, and the ledger's unique request id refuses a second row, so a request settled
twice (by its runner and by a reaper that thought it dead) counts once.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from conversations.models import Conversation, Message, Price, UsageRecord
from conversations.rendering import finished_message
from conversations.upstream import UpstreamError
from conversations.usage import Usage, estimate_prompt_tokens, estimate_tokens


@dataclass(frozen=True)
class Request:
    """One upstream request as the ledger knows it: who asked, with which model, for which
    replies (none for a title), and its prompt as estimated when it was built."""

    id: uuid.UUID
    user_id: int
    conversation_id: str | None
    model_id: int | None
    provider_id: int | None
    model_name: str
    asked_at: datetime
    reply_ids: tuple = ()
    prompt_estimate: int = 0
    # The language of the page that asked: the finished replies' HTML is rendered in it.
    language: str = settings.LANGUAGE_CODE
    # Who asked: the chat, a title written for it, or the gateway with one of the user's
    # keys (UsageRecord.Source).
    source: str = "chat"
    api_key_id: int | None = None
    # The model's price when it was asked (None: none set), read once for its reservation
    # and its settling; `priced` false (a request rebuilt by the reaper): to be read.
    price: Price | None = field(default=None, compare=False, repr=False)
    priced: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def to(cls, model, *, user_id, conversation_id=None, messages=(), **fields):
        """A new request to `model`, asked now, its prompt `messages` estimated. Runs a
        query (the price): call it in the database thread."""
        asked_at = timezone.now()
        return cls(
            id=uuid.uuid4(),
            user_id=user_id,
            conversation_id=conversation_id,
            model_id=model.pk,
            provider_id=model.provider_id,
            model_name=model.upstream_id,
            asked_at=asked_at,
            prompt_estimate=estimate_prompt_tokens(messages),
            price=Price.objects.in_effect(model.pk, asked_at),
            priced=True,
            **fields,
        )

    def price_in_effect(self):
        """The price in effect when the request was made; later changes never rewrite it."""
        if self.priced or self.model_id is None:
            return self.price
        return Price.objects.in_effect(self.model_id, self.asked_at)

    def ledger_row(self, **fields):
        """This request's row of the usage ledger, with `fields` (what it used or may)."""
        return UsageRecord(
            request_id=self.id,
            user_id=self.user_id,
            conversation_id=self.conversation_id,
            provider_id=self.provider_id,
            model_id=self.model_id,
            model_name=self.model_name,
            source=self.source,
            api_key_id=self.api_key_id,
            **fields,
        )


@dataclass(frozen=True)
class Reply:
    """What one reply (one choice) came to: plain values, read once the stream has ended."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list = field(default_factory=list)
    finish_reason: str = ""
    stop_sequence: str = ""

    @classmethod
    def of(cls, choice):
        """An upstream.Choice, copied."""
        return cls(
            content=choice.content,
            reasoning=choice.reasoning,
            tool_calls=[{**call, "function": {**call["function"]}} for call in choice.tool_calls],
            finish_reason=choice.finish_reason,
            stop_sequence=choice.stop_sequence,
        )


@dataclass(frozen=True)
class Outcome:
    """How a request ended: its status, each reply in the order of `Request.reply_ids`, the
    usage the provider reported (None: estimate it) and its timings."""

    status: str
    replies: tuple = ()
    error: str = ""
    usage: Usage | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    # The provider's failure, if that is how it ended: its kind is kept on the replies (the
    # sentence users read), and a request that never reached the provider used nothing.
    failure: UpstreamError | None = None

    @property
    def reached_provider(self):
        return self.failure is None or self.failure.reached


@dataclass(frozen=True)
class Settled:
    """What to tell the tabs: a `message.done` payload per reply this call settled (none
    when another had settled them already) and the conversation's sidebar summary."""

    done: list
    conversation: dict | None
    user_id: int | None = None
    # What the request used, as settled: reported, else estimated (None: settled before).
    usage: Usage | None = None


def settle(request, outcome):
    """Write the request's ending, once. Runs queries: call it in the database thread."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update(of=("self",))
            .select_related("model__provider", "parent")  # the parent: finished_message's
            .filter(id__in=request.reply_ids, status=Message.Status.STREAMING)
            .order_by("created")
        )
        if request.reply_ids and not rows:
            return Settled(done=[], conversation=None)  # settled already
        texts = [reply.content + reply.reasoning for reply in outcome.replies] or [""]
        if not outcome.reached_provider:
            # Nothing was sent (no connection could be made): nothing was used, no estimate.
            shares = [Usage() for _ in texts]
            total = Usage()
        elif outcome.usage is not None:
            total = outcome.usage
            shares = total.share([estimate_tokens(text) for text in texts])
        else:
            shares = Usage.estimate_replies(request.prompt_estimate, texts)
            total = Usage.sum(shares)
        price = request.price_in_effect()
        cost = total.cost if total.cost is not None else (price.cost(total) if price else 0)
        # A provider's own figure is in US dollars (OpenRouter's credits).
        currency = "USD" if total.cost is not None or not price else price.currency
        if request.reply_ids:  # a title's request has none: its text only counts
            ended = zip(outcome.replies, shares, strict=True)
            by_id = dict(zip(request.reply_ids, ended, strict=True))
            for row in rows:
                reply, usage = by_id[row.id]
                _write(row, reply, usage, outcome, cost, total, now, currency)
        _write_ledger(request, outcome, total, cost, currency, rows, now)
        if request.conversation_id:
            Conversation.objects.filter(id=request.conversation_id).update(updated=now)
    if not rows:
        return Settled(done=[], conversation=None, usage=total)
    conversations = Conversation.objects.with_generating().select_related("model")
    conversation = conversations.get(id=request.conversation_id)
    with translation.override(request.language):
        done = [finished_message(row) for row in rows]
    summary = {**conversation.to_dict(), "generating": conversation.generating}
    return Settled(done=done, conversation=summary, user_id=request.user_id, usage=total)


def failure_of(error):
    """How a reply keeps its provider's failure (Message.failure): the kind, and for an HTTP
    refusal its status, for the sentence a user reads; "unreachable" when nothing was sent."""
    if error is None:
        return ""
    if not error.reached:
        return "unreachable"
    return f"{error.code}/{error.status}" if error.status else error.code


def _write(row, reply, usage, outcome, cost, total, now, currency):
    row.content, row.reasoning, row.tool_calls = reply.content, reply.reasoning, reply.tool_calls
    row.finish_reason, row.stop_sequence = reply.finish_reason, reply.stop_sequence
    row.status, row.error = outcome.status, outcome.error
    row.failure = failure_of(outcome.failure)
    if outcome.status == Message.Status.COMPLETE and not (reply.finish_reason or reply.content):
        row.status = Message.Status.FAILED
        row.error = gettext_noop("The provider returned fewer choices than were asked for.")
    for name, value in usage.as_fields().items():
        setattr(row, name, value)
    row.usage_estimated = usage.estimated
    # Each reply's part of the request's cost, in proportion to its tokens.
    share = usage.total_tokens / total.total_tokens if total.total_tokens else 1
    row.cost = round(Decimal(cost) * Decimal(share), 8)
    row.currency = currency
    row.ttft_ms, row.duration_ms, row.completed = outcome.ttft_ms, outcome.duration_ms, now
    row.save()


def _write_ledger(request, outcome, total, cost, currency, rows, now):
    """The request's reservation (admission.reserve) becomes what it cost; a request that
    reserved nothing (one made before reservations) gets its row now. Never two rows: the
    request id is unique."""
    fields = {
        "message": rows[0] if rows else None,
        "status": outcome.status,
        "reached_provider": outcome.reached_provider,
        "estimated": total.estimated,
        "cost": cost,
        "currency": currency,
        "provider_cost": total.cost,
        "ttft_ms": outcome.ttft_ms,
        "duration_ms": outcome.duration_ms,
        **total.as_fields(),
    }
    reservation = UsageRecord.objects.filter(request_id=request.id, status=Message.Status.STREAMING)
    if not reservation.update(**fields):
        row = request.ledger_row(created=now, **fields)
        UsageRecord.objects.bulk_create([row], ignore_conflicts=True)
