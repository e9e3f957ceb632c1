"""Replies whose runner died: found and ended `interrupted`, with their last checkpoint.

Runners checkpoint their text every few seconds and touch their rows while they think, so
a reply silent for CONFAB_STALE_AFTER_S has no runner left in any process. The reaper runs
at start-up and then periodically in every server process (see chatsite/asgi.py).
"""

import asyncio
import logging
import uuid
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_noop

from conversations.fanout import publish, publish_to_user
from conversations.files import processing
from conversations.generation.runner import generations
from conversations.generation.settle import Outcome, Reply, Request, Settled, settle
from conversations.models import Conversation, Message, ToolApproval
from conversations.rendering import finished_message
from conversations.tools import loop

logger = logging.getLogger(__name__)

# Stored in English, shown in the reader's language (Message.error_text).
INTERRUPTED = gettext_noop("The server stopped while this reply was being generated.")
TOOL_INTERRUPTED = gettext_noop("The server stopped while this tool ran.")


def reap_stale(conversation_id=None):
    """End every stale reply (of one conversation, or all) as interrupted, keeping its last
    checkpoint; what to tell the tabs, one settle() result per request."""
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_STALE_AFTER_S)
    stale = Message.objects.filter(status=Message.Status.STREAMING, checkpointed__lt=cutoff)
    if conversation_id is not None:
        stale = stale.filter(conversation_id=conversation_id)
    ended_tools = _interrupt_tools(stale.filter(role=Message.Role.TOOL))
    requests = {}
    stale = stale.exclude(role=Message.Role.TOOL).exclude(id__in=list(generations))
    stale = stale.select_related("conversation", "model")
    for reply in stale.order_by("created"):
        # Replies from before requests had ids are a request each.
        requests.setdefault(reply.request_id or uuid.uuid5(reply.id, "reaped"), []).append(reply)
    settled = [
        settle(*_interrupted(request_id, replies)) for request_id, replies in requests.items()
    ]
    return settled + ended_tools


def _interrupt_tools(stale):
    """Tool calls whose process died while running them: interrupted, and their turn goes
    no further. (A call waiting for approval is not stale: it expires, see tools.loop.)"""
    stale = stale.exclude(approval=ToolApproval.PENDING).exclude(id__in=list(loop.running))
    ids = list(stale.values_list("id", flat=True))
    stale.update(
        status=Message.Status.INTERRUPTED,
        content=TOOL_INTERRUPTED,
        tool_error=True,
        completed=timezone.now(),
    )
    ended = Message.objects.filter(id__in=ids).select_related("conversation")
    return [
        Settled(done=[finished_message(m)], conversation=None, user_id=m.conversation.owner_id)
        for m in ended
    ]


def _interrupted(request_id, replies):
    """The request of stale `replies`, and its ending: the text of their last checkpoint,
    the prompt estimated when it began."""
    first = replies[0]
    request = Request(
        id=request_id,
        user_id=first.conversation.owner_id,
        conversation_id=str(first.conversation_id),
        model_id=first.model_id,
        provider_id=first.model.provider_id if first.model else None,
        model_name=first.model_name,
        asked_at=first.created,
        reply_ids=tuple(reply.id for reply in replies),
        prompt_estimate=first.prompt_tokens,
    )
    outcome = Outcome(
        status=Message.Status.INTERRUPTED,
        replies=tuple(Reply(reply.content, reply.reasoning, reply.tool_calls) for reply in replies),
        error=INTERRUPTED,
    )
    return request, outcome


async def reap(conversation_id=None):
    """Reap, and tell every tab showing a reaped reply that it has ended."""
    settled = await database_sync_to_async(reap_stale)(conversation_id)
    ended = [result for result in settled if result.done]
    if ended:
        logger.info("marked %d orphaned requests interrupted", len(ended))
    for result in ended:
        for message in result.done:
            await publish(message["conversation"], {"type": "message.done", "message": message})
        if result.conversation is not None:
            await publish_to_user(
                result.user_id,
                {"type": "conversation.updated", "conversation": result.conversation},
            )
    return ended


def purge_deleted():
    """Delete for good the conversations deleted longer ago than Undo allows."""
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_UNDO_DELETE_S)
    deleted, _ = Conversation.objects.filter(deleted__lt=cutoff).delete()
    return deleted


async def reap_periodically():
    while True:
        try:
            await reap()
            await loop.expire()
            await database_sync_to_async(purge_deleted)()
            await database_sync_to_async(processing.purge_unsent)()
            await processing.resume_stalled()  # files whose process ended mid-way
        except Exception:
            logger.exception("the reaper failed; trying again later")
        await asyncio.sleep(settings.CONFAB_STALE_AFTER_S / 2)


async def heartbeat_periodically():
    """Keep the rows of this process's running replies fresh, even while a model thinks."""
    while True:
        await asyncio.sleep(settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000 * 5)
        if generations or loop.running:
            await _touch([*generations, *loop.running])


@database_sync_to_async
def _touch(message_ids):
    Message.objects.filter(id__in=message_ids, status=Message.Status.STREAMING).update(
        checkpointed=timezone.now()
    )


# What every server process runs in the background while it serves (see `manage.py serve`).
PERIODIC = (reap_periodically, heartbeat_periodically)
