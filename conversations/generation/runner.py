"""The generation runner: one asyncio task per upstream request, owned by the process, not
by the socket that asked.

A reply outlives the browser tab that asked for it. The read loop only folds the stream's
events (upstream.events) into the request's `Completion` and marks it dirty; a flusher sends
coalesced frames to the sockets subscribed in this process and queues them for those of
other processes (the first delta at once, then at most one frame per
CONFAB_FRAME_INTERVAL_MS) and checkpoints the text every CONFAB_CHECKPOINT_INTERVAL_MS, so
nothing slow ever sits between two upstream reads. However the request ends, settle() writes
it, once.
"""

import asyncio
import logging
import time
from dataclasses import replace

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_noop

from conversations import upstream
from conversations.fanout import (
    hub,
    mailbox,
    outbox,
    publish,
    publish_to_user,
)
from conversations.generation import titles
from conversations.generation.settle import Outcome, Reply, settle
from conversations.models import Message
from conversations.upstream import ChatStream, Completion
from conversations.upstream.events import DELTAS

logger = logging.getLogger(__name__)

# The generations of this process, by reply id (str): a request with n > 1 is there once
# per reply.
generations = {}
# False once the process is shutting down: new sends are refused (generation.admission).
accepting = True
# How long `message.done` waits for a reply's last frames to leave for other processes.
REMOTE_FRAMES_WAIT_S = 1


def generations_running():
    return set(generations.values())


async def launch(prepared, *, user_id, language, client_id=None, except_channel=None, after=None):
    """Start a prepared request: tell every tab of its new messages, start its runner,
    update the user's sidebars. `after(generation, settled)` is awaited once the request
    has settled complete, before its end is published; the coroutine it returns, if any,
    then runs in the background (the agent loop's next step)."""
    conversation_id = prepared.conversation_id
    events = []
    for message in prepared.created:
        event = {"type": "message.created", "message": message}
        if client_id:
            event["client_id"] = client_id
        events.append(event)
    # This process's tabs hear of the reply before its runner can send them a frame:
    # a frame of a reply a page does not know yet is dropped.
    for event in events:
        await hub.publish(conversation_id, event)
    # Then the runner, then other processes: a tab there that hears of the reply asks
    # the runner for its frames, so the runner must be listening first.
    await Generation(prepared, language=language, after=after).start()
    for event in events:
        await publish(conversation_id, event, here=False)
    # The sidebar of the user's other tabs: a new conversation, or one now generating.
    created = prepared.created_conversation
    await publish_to_user(
        user_id,
        {
            "type": "conversation.created" if created else "conversation.updated",
            "conversation": prepared.conversation,
        },
        except_channel=except_channel,
    )


class ReplyStream:
    """One reply of a request (one choice), and how much of it frames have carried.

    The `sent_*` counters index the choice's parts (upstream.Choice keeps text as the parts
    it arrived in); `seq` numbers the frames.
    """

    def __init__(self, message, choice):
        self.message = message
        self.choice = choice
        self.seq = 0
        self.sent_content = 0
        self.sent_reasoning = 0
        self.sent_tool_call_updates = 0

    def next_frame(self):
        """A `message.delta` with everything not yet sent, or None when nothing is new."""
        choice = self.choice
        content = "".join(choice.content_parts[self.sent_content :])
        reasoning = "".join(choice.reasoning_parts[self.sent_reasoning :])
        tool_calls_changed = choice.tool_call_updates != self.sent_tool_call_updates
        if not (content or reasoning or tool_calls_changed):
            return None
        self.sent_content = len(choice.content_parts)
        self.sent_reasoning = len(choice.reasoning_parts)
        self.sent_tool_call_updates = choice.tool_call_updates
        self.seq += 1
        frame = {"type": "message.delta", "message": str(self.message.id), "seq": self.seq}
        if content:
            frame["content"] = content
        if reasoning:
            frame["reasoning"] = reasoning
        if tool_calls_changed:
            # Tool calls are small: the whole list, so a frame never needs the one before.
            frame["tool_calls"] = choice.tool_calls
        return frame

    def snapshot(self):
        """The reply as far as frames have carried it, with the seq of the last frame."""
        message = self.message.to_dict()
        message["content"] = "".join(self.choice.content_parts[: self.sent_content])
        message["reasoning"] = "".join(self.choice.reasoning_parts[: self.sent_reasoning])
        message["tool_calls"] = self.choice.tool_calls
        return {"type": "message.snapshot", "message": message, "seq": self.seq}


class Generation:
    """One upstream request and the replies it produces (one per choice when n > 1)."""

    def __init__(self, prepared, *, language=None, after=None):
        self.request = replace(prepared.request, language=language or settings.LANGUAGE_CODE)
        self.conversation_id = self.request.conversation_id
        self.user_id = self.request.user_id
        self.after = after
        self.stream = ChatStream(prepared.provider, prepared.body)
        self.completion = Completion()
        self.replies = [
            ReplyStream(message, self.completion.choice(index))
            for index, message in enumerate(prepared.replies)
        ]
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
        self.task = asyncio.create_task(self._run(), name=f"generation-{self.request.id}")
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
        except Exception:
            logger.exception("generation %s failed", self.request.id)
            status = Message.Status.FAILED
            error = gettext_noop("Confab failed while generating this reply.")
        finally:
            # Under the lock the flusher is never mid-frame: a frame it had counted as sent
            # but not yet handed to every socket would be lost.
            async with self.lock:
                flusher.cancel()
        if failure := self.completion.failure:
            status = Message.Status.INTERRUPTED if failure.code == "cut" else Message.Status.FAILED
            error = str(failure)
            # For whoever looks into it (the user reads a sentence, error_text), but never
            # what the provider sent: it may hold reply text. A connection that could not be
            # made holds none: its host and reason.
            said = error if not failure.reached else f"{failure.code} {failure.status or ''}"
            logger.warning("request %s failed: %s", self.request.id, said.strip())
        try:
            await self._flush()
            settled = await self._settle(status, error)
            follow = await self._after(settled) if status == Message.Status.COMPLETE else None
            done = [{"type": "message.done", "message": message} for message in settled.done]
            for event in done:
                await publish(self.conversation_id, event, everywhere=False)
            await self._remote_frames_sent()
            for event in done:
                await publish(self.conversation_id, event, here=False)
            if settled.conversation is not None:
                await publish_to_user(
                    self.user_id,
                    {"type": "conversation.updated", "conversation": settled.conversation},
                )
            if status == Message.Status.COMPLETE and settings.CONFAB_AUTO_TITLE:
                in_background(titles.write_title(self.conversation_id, self.user_id))
            if follow is not None:
                in_background(follow)
        finally:
            for reply in self.replies:
                generations.pop(str(reply.message.id), None)
            await mailbox.leave(self.conversation_id)

    async def _after(self, settled):
        """What follows a complete request (the agent loop's next step), begun before its
        end is told: `after` writes and announces what comes next, so no tab ever sees the
        turn as over between two steps; it returns what is left to run, in the background."""
        if self.after is None:
            return None
        try:
            return await self.after(self, settled)
        except Exception:
            logger.exception("what follows generation %s failed", self.request.id)
            return None

    async def _read(self):
        add = self.completion.add
        async for event in self.stream:
            add(event)
            if self.ttft_ms is None and isinstance(event, DELTAS):
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
            async with asyncio.timeout(REMOTE_FRAMES_WAIT_S):
                for process in list(self.remote):
                    await outbox.sent(process)
        except TimeoutError:
            logger.warning("the last frames of %s are slow to leave", self.request.id)

    def _maybe_checkpoint(self):
        now = time.monotonic()
        due = now - self.last_checkpoint >= settings.CONFAB_CHECKPOINT_INTERVAL_MS / 1000
        if due and (self.checkpointing is None or self.checkpointing.done()):
            self.last_checkpoint = now
            texts = {r.message.id: (r.choice.content, r.choice.reasoning) for r in self.replies}
            self.checkpointing = asyncio.create_task(_checkpoint(texts))

    def _elapsed_ms(self):
        return int((time.monotonic() - self.started) * 1000)

    async def _settle(self, status, error):
        if self.checkpointing is not None:
            await asyncio.wait([self.checkpointing])
        outcome = Outcome(
            status=status,
            replies=tuple(Reply.of(reply.choice) for reply in self.replies),
            error=error,
            usage=self.completion.usage,
            ttft_ms=self.ttft_ms,
            duration_ms=self._elapsed_ms(),
            failure=self.completion.failure,
        )
        return await database_sync_to_async(settle)(self.request, outcome)


@database_sync_to_async
def _checkpoint(texts):
    now = timezone.now()
    for message_id, (content, reasoning) in texts.items():
        Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(
            content=content, reasoning=reasoning, checkpointed=now
        )


def _on_stop(message):
    if generation := generations.get(message["message"]):
        generation.stop()


def _on_snapshot(message):
    for generation in _in_conversation(message["conversation"]):
        generation.send_snapshots(message["reply_to"], message["socket"])


def _on_unsubscribe(message):
    for generation in _in_conversation(message["conversation"]):
        generation.forget(message["channel"])


def _in_conversation(conversation_id):
    return {g for g in generations.values() if g.conversation_id == conversation_id}


def _unreachable(process):
    """A process whose mailbox is full: its sockets get no more frames from this one."""
    for generation in generations_running():
        generation.remote.pop(process, None)


# What sockets of other processes ask of this process's runners, through its mailbox.
mailbox.handlers.update(
    {
        "runner.stop": _on_stop,
        "runner.snapshot": _on_snapshot,
        "runner.unsubscribe": _on_unsubscribe,
    }
)
outbox.unreachable = _unreachable

_background = set()


def in_background(coroutine):
    """A task that outlives its caller, kept referenced until it ends; what it raises is
    logged, not lost."""
    task = asyncio.create_task(_logged(coroutine))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _logged(coroutine):
    try:
        await coroutine
    except Exception:
        logger.exception("a background task of the runner failed")


async def shutdown(grace_s=None):
    """Refuse new sends, let running replies finish for a while, then end the rest
    as interrupted (their text so far kept)."""
    global accepting
    accepting = False
    if grace_s is None:
        grace_s = settings.CONFAB_SHUTDOWN_GRACE_S
    # A generation registers before its task exists (start() awaits the mailbox between).
    running = {g.task for g in generations.values() if g.task is not None}
    if running:
        await asyncio.wait(running, timeout=grace_s)
    for generation in generations_running():
        generation.reader.cancel()
    remaining = {g.task for g in generations.values() if g.task is not None}
    if remaining:
        await asyncio.wait(remaining, timeout=grace_s)
    # What follows replies (a tool call running, a title) gets the same grace; a turn is
    # carried no further here (tools.loop), the reaper of another process takes it up.
    if _background:
        await asyncio.wait(set(_background), timeout=grace_s)
    await mailbox.close()
    await upstream.close_clients()  # the pooled connections to providers
