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
from django.db import transaction
from django.utils import timezone

from conversations.fanout import publish
from conversations.models import Conversation, Message, UsageRecord
from conversations.runner import generations
from conversations.usage import Usage

logger = logging.getLogger(__name__)


def reap_stale(conversation_id=None):
    """End every stale reply (of one conversation, or all) as interrupted; their ids."""
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_STALE_AFTER_S)
    stale = Message.objects.filter(status=Message.Status.STREAMING, checkpointed__lt=cutoff)
    if conversation_id is not None:
        stale = stale.filter(conversation_id=conversation_id)
    reaped = []
    for reply in stale.select_related("conversation", "model").exclude(id__in=list(generations)):
        # The prompt was estimated when the reply began; the text is the last checkpoint.
        usage = Usage.estimate([], reply.content + reply.reasoning)
        usage.prompt_tokens = reply.prompt_tokens
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        price = reply.model.price_at(reply.created) if reply.model else None
        cost = price.cost(usage) if price else 0
        with transaction.atomic():
            updated = Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(
                status=Message.Status.INTERRUPTED,
                error="The server stopped while this reply was being generated.",
                completed=timezone.now(),
                usage_estimated=True,
                cost=cost,
                **usage.as_fields(),
            )
            if not updated:
                continue  # its runner finished it meanwhile
            UsageRecord.objects.get_or_create(
                request_id=uuid.uuid5(reply.id, "reaped"),
                defaults={
                    "user_id": reply.conversation.owner_id,
                    "conversation_id": reply.conversation_id,
                    "message": reply,
                    "model_id": reply.model_id,
                    "provider_id": reply.model.provider_id if reply.model else None,
                    "model_name": reply.model_name,
                    "status": Message.Status.INTERRUPTED,
                    "estimated": True,
                    "cost": cost,
                    "currency": price.currency if price else "USD",
                    **usage.as_fields(),
                },
            )
        reaped.append(reply.id)
    return reaped


@database_sync_to_async
def _finished(message_ids):
    return [
        message.to_dict(with_html=True) for message in Message.objects.filter(id__in=message_ids)
    ]


async def reap(conversation_id=None):
    """Reap, and tell every tab showing a reaped reply that it has ended."""
    reaped = await database_sync_to_async(reap_stale)(conversation_id)
    if reaped:
        logger.info("marked %d orphaned replies interrupted", len(reaped))
        for message in await _finished(reaped):
            await publish(message["conversation"], {"type": "message.done", "message": message})
    return reaped


def purge_deleted():
    """Delete for good the conversations deleted longer ago than Undo allows."""
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_UNDO_DELETE_S)
    deleted, _ = Conversation.objects.filter(deleted__lt=cutoff).delete()
    return deleted


async def reap_periodically():
    while True:
        try:
            await reap()
            await database_sync_to_async(purge_deleted)()
        except Exception:
            logger.exception("the reaper failed; trying again later")
        await asyncio.sleep(settings.CONFAB_STALE_AFTER_S / 2)


async def heartbeat_periodically():
    """Keep the rows of this process's running replies fresh, even while a model thinks."""
    while True:
        await asyncio.sleep(settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000 * 5)
        if generations:
            await _touch(list(generations))


@database_sync_to_async
def _touch(message_ids):
    Message.objects.filter(id__in=message_ids, status=Message.Status.STREAMING).update(
        checkpointed=timezone.now()
    )
