"""Getting events to every tab: directly to sockets of this process, through the channel
layer to sockets of other processes.

Measured on these machines, one channels_redis group_send costs about 1.1 ms of CPU, so
frames go straight to the sockets subscribed in the runner's own process (the hub) and
cross the layer only when a socket in another process has asked for them. Rare events
(a new message, a finished reply, a title) always cross it, once each.

Every layer message carries the process it came from, so a socket of that process, which
already had the event from the hub, does not get it twice.
"""

import json
import logging
import uuid
from collections import defaultdict

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
