"""settle(): every ending of an upstream request written once, however many times it is
settled (its runner, a reaper that thought it dead, a retry)."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.generation.reaper import reap_stale
from conversations.generation.settle import Outcome, Reply, Request, settle
from conversations.models import Conversation, Message, UsageRecord
from conversations.usage import Usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def streaming(alice, model):
    """A reply being generated: its row, and its request as the runner holds it."""
    conversation = Conversation.objects.create(owner=alice, model=model)
    question = Message.objects.create(conversation=conversation, role="user", content="Hi?")
    request_id = uuid.uuid4()
    reply = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="streaming",
        model=model, model_name=model.upstream_id, request_id=request_id, prompt_tokens=9,
        content="Hel", checkpointed=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    request = Request(
        id=request_id,
        user_id=alice.pk,
        conversation_id=str(conversation.id),
        model_id=model.pk,
        provider_id=model.provider_id,
        model_name=model.upstream_id,
        asked_at=reply.created,
        reply_ids=(reply.id,),
        prompt_estimate=9,
    )
    return reply, request


def complete(text="Hello there.", usage=None):
    return Outcome(
        status=Message.Status.COMPLETE,
        replies=(Reply(content=text, finish_reason="stop"),),
        usage=usage or Usage(10, 3, 13),
        ttft_ms=40,
        duration_ms=900,
    )


def test_it_writes_the_reply_the_ledger_row_and_the_done_payload(streaming, model):
    reply, request = streaming

    settled = settle(request, complete())

    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.finish_reason) == ("complete", "Hello there.",
                                                                  "stop")  # fmt: skip
    assert (reply.prompt_tokens, reply.completion_tokens, reply.usage_estimated) == (10, 3, False)
    assert reply.cost == Decimal(10 * 2 + 3 * 8) / 1_000_000
    [row] = UsageRecord.objects.all()
    assert (row.request_id, row.message_id, row.total_tokens, row.cost) == (
        request.id, reply.id, 13, reply.cost,
    )  # fmt: skip
    [done] = settled.done
    assert (done["id"], done["status"]) == (str(reply.id), "complete")
    assert "Hello there." in done["html"]
    assert settled.conversation["generating"] is False


def test_settling_twice_changes_nothing(streaming):
    reply, request = streaming
    settle(request, complete())

    again = settle(request, complete("Something else", Usage(99, 99, 198)))

    assert again.done == [] and again.conversation is None
    reply.refresh_from_db()
    assert (reply.content, reply.total_tokens) == ("Hello there.", 13)
    assert UsageRecord.objects.count() == 1


def test_a_request_the_reaper_ended_is_not_ended_again_by_its_runner(streaming, settings):
    reply, request = streaming
    settings.CONFAB_STALE_AFTER_S = 30
    [reaped] = reap_stale()

    late = settle(request, complete())

    assert late.done == []
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.usage_estimated) == ("interrupted", "Hel", True)
    [row] = UsageRecord.objects.all()
    assert (row.request_id, row.status, row.estimated) == (request.id, "interrupted", True)
    assert reaped.done[0]["status"] == "interrupted"


def test_the_ledger_refuses_a_second_row_for_a_request(streaming):
    _, request = streaming
    settle(request, complete())
    [row] = UsageRecord.objects.all()

    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


def test_an_ending_without_usage_is_estimated_from_the_prompt_and_the_text(streaming):
    reply, request = streaming

    settle(request, Outcome(status=Message.Status.CANCELLED, replies=(Reply("Hello th"),)))

    reply.refresh_from_db()
    assert (reply.status, reply.usage_estimated) == ("cancelled", True)
    assert (reply.prompt_tokens, reply.completion_tokens) == (9, 2)
    assert UsageRecord.objects.get().estimated


def test_a_title_is_settled_as_a_ledger_row_without_a_reply(alice, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    request = Request(
        id=uuid.uuid4(), user_id=alice.pk, conversation_id=str(conversation.id),
        model_id=model.pk, provider_id=model.provider_id, model_name=model.upstream_id,
        asked_at=timezone.now(), prompt_estimate=30,
    )  # fmt: skip

    settled = settle(request, complete("A title", Usage(30, 2, 32)))
    settle(request, complete("A title", Usage(30, 2, 32)))

    assert settled.done == []
    [row] = UsageRecord.objects.all()
    assert (row.message_id, row.total_tokens, row.conversation_id) == (None, 32, conversation.id)
