"""Getting events to every tab: directly to sockets of this process, through the channel
layer to sockets of other processes.

Measured on these machines, one channels_redis group_send costs about 1.1 ms of CPU, so
frames go straight to the sockets subscribed in the runner's own process (the hub) and
cross the layer only when a socket in another process has asked for them. Rare events
(a new message, a finished reply, a title) always cross it, once each.

Every layer message carries the process it came from, so a socket of that process, which
already had the event from the hub, does not get it twice.

Frames for sockets in another process go to that process's mailbox (`runner.<process>`,
read by `Mailbox`), not to each socket: the Outbox sends one layer
message per destination process at a time, carrying every frame, for every socket there,
queued while the previous one was on its way. However many replies a process watches, it
reads a few dozen messages a second, not one per frame per socket.
"""

import asyncio
import json
import logging
import uuid
from collections import Counter, defaultdict

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex


def conversation_group(conversation_id):
    """Sockets, in any process, subscribed to a conversation."""
    return f"conversation.{conversation_id}"


def runners_group(conversation_id):
    """Runners, in any process, generating a reply in a conversation."""
    return f"runners.{conversation_id}"


def user_group(user_id):
    """Every socket of one user: the sidebar of each of their tabs."""
    return f"user.{user_id}"


def mailbox_channel(process_id):
    """The layer address of a process's mailbox."""
    return f"runner.{process_id}"


class Hub:
    """The sockets of this process: by the conversations they subscribe to, and by their
    channel name, for frames another process addresses to them."""

    def __init__(self):
        self.sockets = defaultdict(set)
        self.by_channel = {}

    def attach(self, socket):
        self.by_channel[socket.channel_name] = socket

    def detach(self, socket):
        self.by_channel.pop(socket.channel_name, None)

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

    async def broadcast(self, event):
        """One event to every socket of this process, serialised once."""
        text = json.dumps(event, ensure_ascii=False)
        for socket in list(self.by_channel.values()):
            try:
                await socket.send(text_data=text)
            except Exception:
                logger.debug("dropping a socket that failed to receive", exc_info=True)
                self.detach(socket)

    async def deliver(self, channels, events):
        """Events another process sent to some sockets of this one, each serialised once."""
        texts = [json.dumps(event, ensure_ascii=False) for event in events]
        for channel in channels:
            socket = self.by_channel.get(channel)
            if socket is None:
                continue  # closed meanwhile; its process told the runner, or will
            try:
                for text in texts:
                    await socket.send(text_data=text)
            except Exception:
                logger.debug("dropping a socket that failed to receive", exc_info=True)
                self.detach(socket)


hub = Hub()


# How long the mailbox waits before reading again after the layer failed.
MAILBOX_RETRY_S = 1
# How often at most an Outbox sends to one process: the next message gathers the frames of
# every reply flushed meanwhile.
OUTBOX_INTERVAL_S = 0.01


class Mailbox:
    """This process's address on the channel layer. Sockets here take the frames that
    runners of other processes send them (`runner.deliver`); runners here take control
    messages from sockets in other processes (stop, snapshot requests), through the
    `handlers` the runner registers by message type."""

    def __init__(self):
        self.loop = None
        self.channel = None
        self.listener = None
        self.conversations = Counter()
        self.handlers = {}

    def address(self):
        """The mailbox's channel, read from now on."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new event loop (tests start one per test)
            self.loop, self.conversations = loop, Counter()
            # A plain channel of its own, not one from new_channel(): channels_redis reads
            # those through one shared, lock-guarded buffer per process, which was seen to
            # stop delivering to a long-lived reader after sockets cancelled their reads.
            self.channel = mailbox_channel(PROCESS_ID)
            self.listener = loop.create_task(self._listen(self.channel), name="mailbox")
        return self.channel

    async def join(self, conversation_id):
        """Take the control messages for runners of the conversation (one is starting)."""
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
                logger.exception("the mailbox could not read; retrying")
                await asyncio.sleep(MAILBOX_RETRY_S)
                continue
            if message.get("origin") == PROCESS_ID:
                continue  # sockets of this process reach its runners directly
            try:
                await self._handle(message)
            except Exception:
                logger.exception("a mailbox message failed: %s", message.get("type"))

    async def _handle(self, message):
        if message["type"] == "runner.deliver":
            for channels, events in message["batch"]:
                await hub.deliver(channels, events)
        elif handler := self.handlers.get(message["type"]):
            handler(message)


mailbox = Mailbox()


class Outbox:
    """Events for sockets in other processes, one layer message per process at a time.

    `put` never waits: it queues, and a sender per destination process sends everything
    queued as one message, then waits `interval` so that the next one gathers the frames
    of every reply flushed meanwhile. `sent(process)` waits until what is queued for a
    process so far has gone, so that an event sent another way (a group send) cannot
    overtake it. A process so far behind that its mailbox is full (`capacity` messages
    unread), or a layer so slow that `max_queued` events pile up for one process while a
    send is on its way, is given up: `unreachable(process)` is called, and its sockets
    catch up by snapshot when they next hear of the reply.
    """

    def __init__(self, unreachable=None, interval=OUTBOX_INTERVAL_S, max_queued=10_000):
        self.unreachable = unreachable or (lambda process: None)
        self.interval = interval
        self.max_queued = max_queued
        self.loop = None
        self._reset(None)

    def _reset(self, loop):
        self.loop = loop
        self.queues = {}  # destination mailbox -> [[socket channels, events], ...]
        self.queued = {}  # destination mailbox -> how many events its queue holds
        self.waiting = {}  # destination mailbox -> futures of `sent` for what is queued
        self.in_flight = {}  # destination mailbox -> futures of `sent` for the send under way
        self.senders = {}  # destination mailbox -> the task sending to it

    def put(self, process, channels, events):
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new event loop (tests start one per test)
            self._reset(loop)
        self.queued[process] = self.queued.get(process, 0) + len(events)
        if self.queued[process] > self.max_queued:
            self._give_up(process)
            logger.warning("the channel layer is too slow for %s: its tabs lose frames", process)
            return
        self.queues.setdefault(process, []).append([sorted(channels), events])
        if process not in self.senders:
            self.senders[process] = loop.create_task(self._send(process), name="outbox")

    async def sent(self, process):
        """Once everything queued for `process` until now has been handed to the layer
        (or the process given up)."""
        if process in self.queues:
            waiters = self.waiting.setdefault(process, [])
        elif process in self.in_flight:
            waiters = self.in_flight[process]
        else:
            return
        future = asyncio.get_running_loop().create_future()
        waiters.append(future)
        await future

    async def _send(self, process):
        try:
            while batch := self.queues.pop(process, None):
                self.queued.pop(process, None)
                self.in_flight[process] = self.waiting.pop(process, [])
                message = {"type": "runner.deliver", "origin": PROCESS_ID, "batch": batch}
                try:
                    await get_channel_layer().send(process, message)
                finally:
                    _resolve(self.in_flight.pop(process, []))
                await asyncio.sleep(self.interval)
        except ChannelFull:
            logger.warning("process mailbox %s is full: its tabs get no more frames", process)
            self._give_up(process)
        except Exception:
            logger.exception("frames for another process could not be sent")
            self._give_up(process)
        finally:
            self.senders.pop(process, None)

    def _give_up(self, process):
        self.queues.pop(process, None)
        self.queued.pop(process, None)
        _resolve(self.waiting.pop(process, []))
        self.unreachable(process)


def _resolve(futures):
    for future in futures:
        if not future.done():
            future.set_result(None)


def relayed(event, **routing):
    """A layer message that carries `event` to the `relay` handler of each socket."""
    return {"type": "relay", "origin": PROCESS_ID, "event": event, **routing}


def single_process():
    """With the in-memory layer every socket is in this process: the hub reaches them all."""
    return isinstance(get_channel_layer(), InMemoryChannelLayer)


async def publish(conversation_id, event, *, here=True, everywhere=True):
    """To every socket subscribed to the conversation: here directly, elsewhere by layer."""
    if here:
        await hub.publish(conversation_id, event)
    if everywhere and not single_process():
        await get_channel_layer().group_send(conversation_group(conversation_id), relayed(event))


async def publish_to_user(user_id, event, *, except_channel=None):
    """To every socket of a user, in every process (but the one that caused it)."""
    await get_channel_layer().group_send(
        user_group(user_id), relayed(event, origin=None, skip=except_channel)
    )


# Frames for sockets in other processes (the runner says what to do with a process given up).
outbox = Outbox()
