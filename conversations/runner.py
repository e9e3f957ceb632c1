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
from conversations.usage import Usage

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


class Generation:
    """One reply being generated: its upstream stream, its frames, its ending."""

    def __init__(self, reply, *, provider, model, messages, body, user_id):
        self.reply = reply
        self.conversation_id = str(reply.conversation_id)
        self.provider = provider
        self.model = model
        self.messages = messages
        self.stream = ChatStream(provider, body)
        self.user_id = user_id
        self.request_id = uuid.uuid4()
        self.seq = 0
        # How much of the folded choice has gone out in frames.
        self.sent_content = 0
        self.sent_reasoning = 0
        self.sent_tool_call_fragments = 0
        self.dirty = asyncio.Event()
        self.stop_requested = False
        self.started = time.monotonic()
        self.ttft_ms = None
        self.last_checkpoint = self.started
        self.checkpointing = None
        self.reader = None
        self.task = None

    @property
    def choice(self):
        return self.stream.choice(0)

    def start(self):
        generations[str(self.reply.id)] = self
        self.task = asyncio.create_task(self._run(), name=f"reply-{self.reply.id}")
        return self

    def stop(self):
        """Stop at once: cancelling the reader closes the upstream connection."""
        self.stop_requested = True
        if self.reader is not None:
            self.reader.cancel()

    def snapshot(self):
        """The reply as far as frames have carried it, and the seq of the last frame.

        Synchronous on purpose: a socket joined just before it gets every later frame,
        each with a higher seq, so text is neither lost nor doubled.
        """
        message = self.reply.to_dict()
        message["content"] = "".join(self.choice.content_parts[: self.sent_content])
        message["reasoning"] = "".join(self.choice.reasoning_parts[: self.sent_reasoning])
        message["tool_calls"] = self.choice.tool_call_list()
        return {"type": "message.snapshot", "message": message, "seq": self.seq}

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
            logger.exception("reply %s failed", self.reply.id)
            status, error = Message.Status.FAILED, "Confab failed while generating this reply."
        finally:
            flusher.cancel()
        try:
            await self._flush()
            message = await self._save(status, error)
            await hub.publish(self.conversation_id, {"type": "message.done", "message": message})
        finally:
            generations.pop(str(self.reply.id), None)

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
        choice = self.choice
        content = "".join(choice.content_parts[self.sent_content :])
        reasoning = "".join(choice.reasoning_parts[self.sent_reasoning :])
        tool_calls_changed = choice.tool_call_fragments != self.sent_tool_call_fragments
        if not (content or reasoning or tool_calls_changed):
            return
        self.sent_content = len(choice.content_parts)
        self.sent_reasoning = len(choice.reasoning_parts)
        self.sent_tool_call_fragments = choice.tool_call_fragments
        self.seq += 1
        frame = {"type": "message.delta", "message": str(self.reply.id), "seq": self.seq}
        if content:
            frame["content"] = content
        if reasoning:
            frame["reasoning"] = reasoning
        if tool_calls_changed:
            # Tool calls are small: the whole list, so a frame never needs the one before.
            frame["tool_calls"] = choice.tool_call_list()
        await hub.publish(self.conversation_id, frame)

    def _maybe_checkpoint(self):
        now = time.monotonic()
        due = now - self.last_checkpoint >= settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000
        if due and (self.checkpointing is None or self.checkpointing.done()):
            self.last_checkpoint = now
            self.checkpointing = asyncio.create_task(
                _checkpoint(self.reply.id, self.choice.content, self.choice.reasoning)
            )

    def _elapsed_ms(self):
        return int((time.monotonic() - self.started) * 1000)

    async def _save(self, status, error):
        if self.checkpointing is not None:
            await asyncio.wait([self.checkpointing])
        choice = self.choice
        usage = self.stream.usage or Usage.estimate(
            self.messages, choice.content + choice.reasoning
        )
        return await _finish(
            self,
            status=status,
            error=error,
            content=choice.content,
            reasoning=choice.reasoning,
            tool_calls=choice.tool_call_list(),
            finish_reason=choice.finish_reason,
            usage=usage,
            duration_ms=self._elapsed_ms(),
        )


@database_sync_to_async
def _checkpoint(message_id, content, reasoning):
    Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(
        content=content, reasoning=reasoning, checkpointed=timezone.now()
    )


@database_sync_to_async
def _finish(
    generation, *, status, error, content, reasoning, tool_calls, finish_reason, usage, duration_ms
):
    """The reply, its usage and its ledger row, in one transaction."""
    reply, model = generation.reply, generation.model
    now = timezone.now()
    cost = model.cost(usage) if model else None
    with transaction.atomic():
        reply.content = content
        reply.reasoning = reasoning
        reply.tool_calls = tool_calls
        reply.status = status
        reply.error = error
        reply.finish_reason = finish_reason
        for name, value in usage.as_fields().items():
            setattr(reply, name, value)
        reply.usage_estimated = usage.estimated
        reply.cost = cost
        reply.ttft_ms = generation.ttft_ms
        reply.duration_ms = duration_ms
        reply.completed = now
        reply.save()
        UsageRecord.objects.get_or_create(
            request_id=generation.request_id,
            defaults={
                "user_id": generation.user_id,
                "conversation_id": reply.conversation_id,
                "message": reply,
                "provider": generation.provider,
                "model": model,
                "model_name": reply.model_name,
                "status": status,
                "estimated": usage.estimated,
                "cost": cost or 0,
                "ttft_ms": generation.ttft_ms,
                "duration_ms": duration_ms,
                "created": now,
                **usage.as_fields(),
            },
        )
        Conversation.objects.filter(id=reply.conversation_id).update(updated=now)
    # The same template partial the page uses, so a finished reply looks as after a reload.
    html = render_to_string("conversations/chat.html#message", {"message": reply})
    return {**reply.to_dict(), "html": html}


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
            await _touch([g.reply.id for g in generations.values()])


@database_sync_to_async
def _touch(message_ids):
    Message.objects.filter(id__in=message_ids, status=Message.Status.STREAMING).update(
        checkpointed=timezone.now()
    )


async def shutdown(grace_s=10):
    """Let running replies finish for a while, then end the rest as interrupted."""
    running = [g.task for g in generations.values()]
    if running:
        await asyncio.wait(running, timeout=grace_s)
    for generation in list(generations.values()):
        generation.reader.cancel()
    remaining = [g.task for g in generations.values()]
    if remaining:
        await asyncio.wait(remaining, timeout=grace_s)
