"""The generation runner: one asyncio task per reply, owned by the process, not the socket.

A reply outlives the browser tab that asked for it. The upstream read loop only folds
chunks (in the upstream client) and marks the reply dirty; a flusher per reply sends
coalesced frames to the sockets subscribed in this process and queues them for those of
other processes (the first delta at once, then at most one frame per
CONFAB_FRAME_INTERVAL_MS) and checkpoints the text every CONFAB_CHECKPOINT_INTERVAL_MS, so
nothing slow ever sits between two upstream reads.
"""

import asyncio
import logging
import time
import uuid
from collections import Counter
from decimal import Decimal

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation

from conversations import titles, upstream
from conversations.fanout import (
    PROCESS_ID,
    Outbox,
    hub,
    mailbox_channel,
    publish,
    publish_to_user,
    runners_group,
)
from conversations.models import Conversation, Message, UsageRecord
from conversations.upstream import ChatStream, UpstreamError
from conversations.usage import Usage, estimate_tokens

logger = logging.getLogger(__name__)


# The replies this process is generating, by message id (str).
generations = {}
# False once the process is shutting down: new sends are refused.
accepting = True


class Mailbox:
    """This process's address on the channel layer: runners take control messages (stop,
    snapshot requests) from sockets in other processes there, and sockets take the frames
    that runners of other processes send them (see fanout.Outbox)."""

    def __init__(self):
        self.loop = None
        self.channel = None
        self.listener = None
        self.conversations = Counter()

    def address(self):
        """The mailbox's channel, read from now on."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new event loop (tests start one per test)
            self.loop, self.conversations = loop, Counter()
            # A plain channel of its own, not one from new_channel(): channels_redis reads
            # those through one shared, lock-guarded buffer per process, which was seen to
            # stop delivering to a long-lived reader after sockets cancelled their reads.
            self.channel = mailbox_channel(PROCESS_ID)
            self.listener = loop.create_task(self._listen(self.channel), name="runner-mailbox")
        return self.channel

    async def join(self, conversation_id):
        self.address()
        if not self.conversations[conversation_id]:
            await get_channel_layer().group_add(runners_group(conversation_id), self.channel)
        self.conversations[conversation_id] += 1

    async def leave(self, conversation_id):
        self.conversations[conversation_id] -= 1
        if self.conversations[conversation_id] <= 0:
            del self.conversations[conversation_id]
            await get_channel_layer().group_discard(runners_group(conversation_id), self.channel)

    async def close(self):
        if self.loop is asyncio.get_running_loop() and not self.listener.done():
            self.listener.cancel()
            await asyncio.wait([self.listener])
        self.loop = None

    async def _listen(self, channel):
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the runner mailbox could not read; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("origin") == PROCESS_ID:
                continue  # sockets of this process reach its runners directly
            try:
                await self._handle(message)
            except Exception:
                logger.exception("a runner control message failed: %s", message.get("type"))

    async def _handle(self, message):
        if message["type"] == "runner.deliver":
            for channels, events in message["batch"]:
                await hub.deliver(channels, events)
            return
        local = {
            g for g in generations.values() if g.conversation_id == message.get("conversation")
        }
        if message["type"] == "runner.stop":
            if generation := generations.get(message["message"]):
                generation.stop()
        elif message["type"] == "runner.snapshot":
            for generation in local:
                generation.send_snapshots(message["reply_to"], message["socket"])
        elif message["type"] == "runner.unsubscribe":
            for generation in local:
                generation.forget(message["channel"])


mailbox = Mailbox()


def _unreachable(process):
    """A process whose mailbox is full: its sockets get no more frames from this one."""
    for generation in set(generations.values()):
        generation.remote.pop(process, None)


outbox = Outbox(_unreachable)


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

    def __init__(self, replies, *, provider, model, messages, body, user_id, language=None):
        self.conversation_id = str(replies[0].conversation_id)
        self.provider = provider
        self.model = model
        self.messages = messages
        self.stream = ChatStream(provider, body)
        self.replies = [ReplyStream(m, self.stream.choice(i)) for i, m in enumerate(replies)]
        self.user_id = user_id
        self.language = language or settings.LANGUAGE_CODE  # for the finished reply's HTML
        self.request_id = uuid.uuid4()
        self.dirty = asyncio.Event()
        self.stop_requested = False
        self.started = time.monotonic()
        self.ttft_ms = None
        self.last_checkpoint = self.started
        self.checkpointing = None
        self.reader = None
        self.task = None
        # Sockets in other processes that asked for this request's frames: their channel
        # names by the mailbox of their process.
        self.remote = {}
        # Held while a frame is handed to this process's sockets (see _run).
        self.lock = asyncio.Lock()

    async def start(self):
        """Register with this process and its mailbox first: a socket of another process
        that hears of the reply can then always reach its runner."""
        for reply in self.replies:
            generations[str(reply.message.id)] = self
        await mailbox.join(self.conversation_id)
        self.task = asyncio.create_task(self._run(), name=f"request-{self.request_id}")
        return self

    def send_snapshots(self, process, channel):
        """Catch up a socket of another process, then send it every later frame.

        Synchronous, like `_flush` up to its first await: the snapshot reaches the outbox
        after every frame whose text it includes and before every later one.
        """
        self.remote.setdefault(process, set()).add(channel)
        outbox.put(process, [channel], self.snapshots())

    def forget(self, channel):
        """A socket of another process that went away."""
        for process, channels in list(self.remote.items()):
            channels.discard(channel)
            if not channels:
                del self.remote[process]

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
            # Under the lock the flusher is never mid-frame: a frame it had counted as sent
            # but not yet handed to every socket would be lost.
            async with self.lock:
                flusher.cancel()
        try:
            await self._flush()
            messages, conversation = await self._save(status, error)
            done = [{"type": "message.done", "message": message} for message in messages]
            for event in done:
                await publish(self.conversation_id, event, everywhere=False)
            await self._remote_frames_sent()
            for event in done:
                await publish(self.conversation_id, event, here=False)
            await publish_to_user(
                self.user_id, {"type": "conversation.updated", "conversation": conversation}
            )
            if status == Message.Status.COMPLETE and settings.CONFAB_AUTO_TITLE:
                _in_background(titles.write_title(self.conversation_id, self.user_id))
        finally:
            for reply in self.replies:
                generations.pop(str(reply.message.id), None)
            await mailbox.leave(self.conversation_id)

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
        """One frame per reply with everything not yet sent, to every subscribed socket."""
        async with self.lock:
            frames = [frame for reply in self.replies if (frame := reply.next_frame())]
            if not frames:
                return
            # To the sockets of other processes that asked, through their process's
            # mailbox (a group send would also echo every frame back to this process);
            # queued before the first await, so a snapshot taken meanwhile follows them.
            for process, channels in self.remote.items():
                outbox.put(process, channels, frames)
            for frame in frames:
                await hub.publish(self.conversation_id, frame)

    async def _remote_frames_sent(self):
        """Until the last frames for other processes have left (briefly: the outbox sends
        every 10 ms), so that `message.done`, which goes by a group send, cannot reach a
        socket there before them."""
        if not self.remote:
            return  # nobody elsewhere asked for frames: nothing to wait for
        try:
            async with asyncio.timeout(1):
                for process in list(self.remote):
                    await outbox.sent(process)
        except TimeoutError:
            logger.warning("the last frames of request %s are slow to leave", self.request_id)

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
    # The price in effect when the reply was asked for; later changes never rewrite it.
    price = model.price_at(generation.replies[0].message.created) if model else None
    cost = total.cost if total.cost is not None else (price.cost(total) if price else Decimal(0))
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
            # Each reply's part of the request's cost, in proportion to its tokens.
            share = usage.total_tokens / total.total_tokens if total.total_tokens else 1
            message.cost = round(cost * Decimal(share), 8)
            message.ttft_ms = generation.ttft_ms
            message.duration_ms = duration_ms
            message.completed = now
            message.save()
            done.append(message)
        # One row per request: a second writer (the reaper) is ignored by the unique id.
        record = UsageRecord(
            request_id=generation.request_id,
            user_id=generation.user_id,
            conversation_id=generation.conversation_id,
            message=done[0],
            provider=generation.provider,
            model=model,
            model_name=done[0].model_name,
            status=status,
            estimated=total.estimated,
            cost=cost,
            # A provider's own figure is in US dollars (OpenRouter's credits).
            currency="USD" if total.cost is not None or not price else price.currency,
            provider_cost=total.cost,
            ttft_ms=generation.ttft_ms,
            duration_ms=duration_ms,
            created=now,
            **total.as_fields(),
        )
        UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
        Conversation.objects.filter(id=generation.conversation_id).update(updated=now)
    conversation = Conversation.objects.select_related("model").get(id=generation.conversation_id)
    with translation.override(generation.language):
        finished = [message.to_dict(with_html=True) for message in done]
    return finished, {
        **conversation.to_dict(),
        "generating": False,
    }


_background = set()


def _in_background(coroutine):
    """A task that outlives its caller, kept referenced until it ends."""
    task = asyncio.create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def running_requests():
    return set(generations.values())


async def shutdown(grace_s=None):
    """Refuse new sends, let running replies finish for a while, then end the rest
    as interrupted (their text so far kept)."""
    global accepting
    accepting = False
    if grace_s is None:
        grace_s = settings.CONFAB_SHUTDOWN_GRACE_S
    running = {g.task for g in generations.values()}
    if running:
        await asyncio.wait(running, timeout=grace_s)
    for generation in set(generations.values()):
        generation.reader.cancel()
    remaining = {g.task for g in generations.values()}
    if remaining:
        await asyncio.wait(remaining, timeout=grace_s)
    await mailbox.close()
    await upstream.close_clients()  # the pooled connections to providers
