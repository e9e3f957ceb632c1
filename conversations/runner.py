"""The generation runner: one asyncio task per reply, owned by the process, not the socket.

A reply outlives the browser tab that asked for it. The upstream read loop only folds
chunks (in the upstream client) and marks the reply dirty; a flusher per reply sends
coalesced frames to the sockets subscribed in this process (the first delta at once, then
at most one frame per CONFAB_FRAME_INTERVAL_MS) and checkpoints the text every
CONFAB_CHECKPOINT_INTERVAL_MS, so nothing slow ever sits between two upstream reads.
"""

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from conversations.models import Conversation, Message, UsageRecord
from conversations.upstream import ChatStream, UpstreamError
from conversations.usage import Usage, estimate_tokens

logger = logging.getLogger(__name__)


class Hub:
    """The sockets of this process subscribed to each conversation."""

    def __init__(self):
        self.sockets = defaultdict(set)

    def join(self, conversation_id, socket):
        self.sockets[str(conversation_id)].add(socket)

    def leave(self, conversation_id, socket):
        sockets = self.sockets.get(str(conversation_id))
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.sockets[str(conversation_id)]

    async def publish(self, conversation_id, event):
        """Send one event to every subscribed socket, serialised once."""
        sockets = self.sockets.get(str(conversation_id))
        if not sockets:
            return
        text = json.dumps(event, ensure_ascii=False)
        for socket in list(sockets):
            try:
                await socket.send(text_data=text)
            except Exception:  # a socket that went away mid-send is dropped, not fatal
                logger.debug("dropping a socket that failed to receive", exc_info=True)
                self.leave(conversation_id, socket)


hub = Hub()
# The replies this process is generating, by message id (str).
generations = {}


class ReplyStream:
    """One reply of a request (one choice), and how much of it frames have carried."""

    def __init__(self, message, choice):
        self.message = message
        self.choice = choice
        self.seq = 0
        self.sent_content = 0
        self.sent_reasoning = 0
        self.sent_tool_call_fragments = 0

    def next_frame(self):
        """A `message.delta` with everything not yet sent, or None when nothing is new."""
        choice = self.choice
        content = "".join(choice.content_parts[self.sent_content :])
        reasoning = "".join(choice.reasoning_parts[self.sent_reasoning :])
        tool_calls_changed = choice.tool_call_fragments != self.sent_tool_call_fragments
        if not (content or reasoning or tool_calls_changed):
            return None
        self.sent_content = len(choice.content_parts)
        self.sent_reasoning = len(choice.reasoning_parts)
        self.sent_tool_call_fragments = choice.tool_call_fragments
        self.seq += 1
        frame = {"type": "message.delta", "message": str(self.message.id), "seq": self.seq}
        if content:
            frame["content"] = content
        if reasoning:
            frame["reasoning"] = reasoning
        if tool_calls_changed:
            # Tool calls are small: the whole list, so a frame never needs the one before.
            frame["tool_calls"] = choice.tool_call_list()
        return frame

    def snapshot(self):
        """The reply as far as frames have carried it, with the seq of the last frame."""
        message = self.message.to_dict()
        message["content"] = "".join(self.choice.content_parts[: self.sent_content])
        message["reasoning"] = "".join(self.choice.reasoning_parts[: self.sent_reasoning])
        message["tool_calls"] = self.choice.tool_call_list()
        return {"type": "message.snapshot", "message": message, "seq": self.seq}


class Generation:
    """One upstream request and the replies it produces (one per choice when n > 1)."""

    def __init__(self, replies, *, provider, model, messages, body, user_id):
        self.conversation_id = str(replies[0].conversation_id)
        self.provider = provider
        self.model = model
        self.messages = messages
        self.stream = ChatStream(provider, body)
        self.replies = [ReplyStream(m, self.stream.choice(i)) for i, m in enumerate(replies)]
        self.user_id = user_id
        self.request_id = uuid.uuid4()
        self.dirty = asyncio.Event()
        self.stop_requested = False
        self.started = time.monotonic()
        self.ttft_ms = None
        self.last_checkpoint = self.started
        self.checkpointing = None
        self.reader = None
        self.task = None

    def start(self):
        for reply in self.replies:
            generations[str(reply.message.id)] = self
        self.task = asyncio.create_task(self._run(), name=f"request-{self.request_id}")
        return self

    def stop(self):
        """Stop at once: cancelling the reader closes the upstream connection."""
        self.stop_requested = True
        if self.reader is not None:
            self.reader.cancel()

    def snapshots(self):
        """Synchronous on purpose: a socket that joined the hub just before gets every
        later frame, each with a higher seq, so text is neither lost nor doubled."""
        return [reply.snapshot() for reply in self.replies]

    async def _run(self):
        flusher = asyncio.create_task(self._flush_continuously())
        self.reader = asyncio.create_task(self._read())
        status, error = Message.Status.COMPLETE, ""
        try:
            await self.reader
        except asyncio.CancelledError:
            status = Message.Status.CANCELLED if self.stop_requested else Message.Status.INTERRUPTED
        except UpstreamError as failure:
            status = Message.Status.INTERRUPTED if failure.code == "cut" else Message.Status.FAILED
            error = str(failure)
        except Exception:
            logger.exception("request %s failed", self.request_id)
            status, error = Message.Status.FAILED, "Confab failed while generating this reply."
        finally:
            flusher.cancel()
        try:
            await self._flush()
            for message in await self._save(status, error):
                await hub.publish(
                    self.conversation_id, {"type": "message.done", "message": message}
                )
        finally:
            for reply in self.replies:
                generations.pop(str(reply.message.id), None)

    async def _read(self):
        async for _delta in self.stream:
            if self.ttft_ms is None:
                self.ttft_ms = self._elapsed_ms()
            self.dirty.set()

    async def _flush_continuously(self):
        interval = settings.CONFAB_FRAME_INTERVAL_MS / 1000
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            await self._flush()
            self._maybe_checkpoint()
            await asyncio.sleep(interval)

    async def _flush(self):
        for reply in self.replies:
            if frame := reply.next_frame():
                await hub.publish(self.conversation_id, frame)

    def _maybe_checkpoint(self):
        now = time.monotonic()
        due = now - self.last_checkpoint >= settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000
        if due and (self.checkpointing is None or self.checkpointing.done()):
            self.last_checkpoint = now
            texts = {r.message.id: (r.choice.content, r.choice.reasoning) for r in self.replies}
            self.checkpointing = asyncio.create_task(_checkpoint(texts))

    def _elapsed_ms(self):
        return int((time.monotonic() - self.started) * 1000)

    async def _save(self, status, error):
        if self.checkpointing is not None:
            await asyncio.wait([self.checkpointing])
        texts = [r.choice.content + r.choice.reasoning for r in self.replies]
        if self.stream.usage is not None:
            total = self.stream.usage
            shares = total.share([estimate_tokens(text) for text in texts])
        else:
            shares = Usage.estimate_each(self.messages, texts)
            total = Usage.sum(shares)
        return await _finish(self, status, error, total, shares, self._elapsed_ms())


@database_sync_to_async
def _checkpoint(texts):
    now = timezone.now()
    for message_id, (content, reasoning) in texts.items():
        Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(
            content=content, reasoning=reasoning, checkpointed=now
        )


@database_sync_to_async
def _finish(generation, status, error, total, shares, duration_ms):
    """The replies, their usage and the request's one ledger row, in one transaction."""
    model = generation.model
    now = timezone.now()
    done = []
    with transaction.atomic():
        for reply, usage in zip(generation.replies, shares, strict=True):
            message, choice = reply.message, reply.choice
            message.content = choice.content
            message.reasoning = choice.reasoning
            message.tool_calls = choice.tool_call_list()
            message.finish_reason = choice.finish_reason
            message.stop_sequence = choice.stop_sequence
            message.status, message.error = status, error
            if status == Message.Status.COMPLETE and not (choice.finish_reason or choice.content):
                message.status = Message.Status.FAILED
                message.error = "The provider returned fewer choices than were asked for."
            for name, value in usage.as_fields().items():
                setattr(message, name, value)
            message.usage_estimated = usage.estimated
            message.cost = model.cost(usage) if model else None
            message.ttft_ms = generation.ttft_ms
            message.duration_ms = duration_ms
            message.completed = now
            message.save()
            done.append(message)
        UsageRecord.objects.get_or_create(
            request_id=generation.request_id,
            defaults={
                "user_id": generation.user_id,
                "conversation_id": generation.conversation_id,
                "message": done[0],
                "provider": generation.provider,
                "model": model,
                "model_name": done[0].model_name,
                "status": status,
                "estimated": total.estimated,
                "cost": model.cost(total) if model else 0,
                "ttft_ms": generation.ttft_ms,
                "duration_ms": duration_ms,
                "created": now,
                **total.as_fields(),
            },
        )
        Conversation.objects.filter(id=generation.conversation_id).update(updated=now)
    # The same template partial the page uses, so a finished reply looks as after a reload.
    return [
        {
            **message.to_dict(),
            "html": render_to_string("conversations/chat.html#message", {"message": message}),
        }
        for message in done
    ]


def reap_stale():
    """Mark replies whose runner died (no checkpoint for a while) interrupted, keeping their text.

    Runners checkpoint every few seconds, so a reply silent for CONFAB_STALE_AFTER_S has
    no runner left in any process.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_STALE_AFTER_S)
    stale = Message.objects.filter(status=Message.Status.STREAMING, checkpointed__lt=cutoff)
    count = 0
    for reply in stale.select_related("conversation", "model"):
        if str(reply.id) in generations:
            continue
        usage = Usage.estimate([], reply.content + reply.reasoning)
        with transaction.atomic():
            updated = Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(
                status=Message.Status.INTERRUPTED,
                error="The server stopped while this reply was being generated.",
                completed=timezone.now(),
                usage_estimated=True,
                **usage.as_fields(),
            )
            if updated:
                UsageRecord.objects.get_or_create(
                    request_id=uuid.uuid5(reply.id, "reaped"),
                    defaults={
                        "user_id": reply.conversation.owner_id,
                        "conversation_id": reply.conversation_id,
                        "message": reply,
                        "model": reply.model,
                        "model_name": reply.model_name,
                        "status": Message.Status.INTERRUPTED,
                        "estimated": True,
                        **usage.as_fields(),
                    },
                )
                count += updated
    return count


async def reap_periodically():
    while True:
        try:
            count = await database_sync_to_async(reap_stale)()
            if count:
                logger.info("marked %d orphaned replies interrupted", count)
        except Exception:
            logger.exception("the reaper failed; trying again later")
        await asyncio.sleep(settings.CONFAB_STALE_AFTER_S / 2)


async def heartbeat_periodically():
    """Keep the checkpoint of every running reply fresh, even one that is thinking quietly."""
    while True:
        await asyncio.sleep(settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000 * 5)
        if generations:
            await _touch(list(generations))


@database_sync_to_async
def _touch(message_ids):
    Message.objects.filter(id__in=message_ids, status=Message.Status.STREAMING).update(
        checkpointed=timezone.now()
    )


async def shutdown(grace_s=10):
    """Let running replies finish for a while, then end the rest as interrupted."""
    running = {g.task for g in generations.values()}
    if running:
        await asyncio.wait(running, timeout=grace_s)
    for generation in set(generations.values()):
        generation.reader.cancel()
    remaining = {g.task for g in generations.values()}
    if remaining:
        await asyncio.wait(remaining, timeout=grace_s)
