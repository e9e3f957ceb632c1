"""The chat websocket: validates client events and turns them into runner calls.

Handlers are awaited one at a time per socket, so nothing here streams: a reply runs in
its own task (conversations.runner) and reaches this socket through the hub.

One trip to the database per event: all database work of a process runs on one thread that
every socket shares, so an event that starts work (send, edit, regenerate, subscribe, stop)
makes its checks inside the one hop it needs anyway: the socket's session first
(conversations.sessions), then what the user may do. No check adds a hop of its own.
"""

import json
import logging
import math
import re
import time

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import trans_real

from conversations import sessions
from conversations.fanout import (
    PROCESS_ID,
    conversation_group,
    hub,
    mailbox,
    runners_group,
    user_group,
)
from conversations.forms import EVENT_FORMS, error_text
from conversations.generation import admission
from conversations.generation.admission import EventError
from conversations.generation.reaper import reap
from conversations.generation.runner import generations, in_background, launch
from conversations.generation.sending import prepare_edit, prepare_regenerate, prepare_send
from conversations.models import Conversation, Message
from conversations.rendering import finished_message
from conversations.sessions import SessionEnded
from conversations.tools import loop

logger = logging.getLogger(__name__)

# Refusals of input no page of ours sends: each is logged once, as a WARNING, without it.
BAD_INPUT = {"bad_frame", "too_large", "bad_json", "too_deep", "bad_unicode", "unknown_type"}
# Events nest no deeper than this (a tool's JSON schema in `params` is the deepest part).
MAX_DEPTH = 32
# The escapes that can make text no database or socket takes: a surrogate, a NUL.
SUSPECT_ESCAPE = re.compile(r"\\u(?:d[89a-f]|0000)", re.IGNORECASE)
# Ended replies whose message.done a socket remembers sending (then it starts afresh).
DONE_REMEMBERED = 10_000


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            # Accepted, then closed: a browser sees code 4401 (signed out) and stops
            # reconnecting; closing during the handshake would show it only 1006.
            await self.accept()
            await self.close(code=4401)
            return
        self.language = language_of(self.scope)
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.signed_out = False
        self.budget = EventBudget(
            settings.CONFAB_SOCKET_EVENTS_BURST, settings.CONFAB_SOCKET_EVENTS_PER_MINUTE
        )
        self.done_sent = set()  # ended replies this socket was sent on subscribe
        self.conversations = set()
        self.watching_runners = set()  # conversations whose runners in other processes we asked
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        hub.attach(self)  # frames from runners of other processes come by channel name
        await self.accept()

    async def disconnect(self, code):
        if not hasattr(self, "conversations"):
            return
        hub.detach(self)
        await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
        for conversation_id in self.conversations:
            hub.leave(conversation_id, self)
            await self.channel_layer.group_discard(
                conversation_group(conversation_id), self.channel_name
            )
        for conversation_id in self.watching_runners:
            await self.channel_layer.group_send(
                runners_group(conversation_id),
                {
                    "type": "runner.unsubscribe",
                    "conversation": conversation_id,
                    "channel": self.channel_name,
                    "origin": PROCESS_ID,
                },
            )

    async def receive(self, text_data=None, bytes_data=None):
        # Errors are answered in the language of the socket's page.
        with translation.override(self.language):
            await self._receive(text_data, bytes_data)

    async def _receive(self, text_data, bytes_data):
        if self.signed_out:
            return  # closing: nothing more starts
        client_id = None
        try:
            self._take_budget()
            event = self._decode(text_data, bytes_data)
            client_id = event.get("client_id") if isinstance(event.get("client_id"), str) else None
            await getattr(self, "on_" + event["type"])(event)
        except SessionEnded:
            await self.sign_out()
        except EventError as error:
            if error.code in BAD_INPUT or error.code == "invalid":
                logger.warning(
                    "websocket event refused (%s) from user %s: %d characters",
                    error.code,
                    self.user.pk,
                    len(text_data if text_data is not None else bytes_data or b""),
                )
            await self.send_event(
                "error", code=error.code, message=str(error), client_id=client_id, **error.extra
            )
        except Exception:
            logger.exception("websocket event failed")
            await self.send_event(
                "error",
                code="internal",
                message=_(
                    "The server ran into an error and could not do this. Nothing you wrote "
                    "is lost: try again, and if it happens again, tell your administrator."
                ),
                client_id=client_id,
            )

    def _take_budget(self):
        """Every frame counts, whatever it holds: one socket cannot keep the server busy."""
        if wait_s := self.budget.take():
            raise EventError(
                "rate_limited",
                _("Too many events on this connection. Try again in %(seconds)d s.")
                % {"seconds": wait_s},
                retry_after=wait_s,
            )

    def _decode(self, text_data, bytes_data):
        if text_data is None:
            raise EventError("bad_frame", _("Send JSON text frames, not binary."))
        if len(text_data) > settings.CONFAB_MAX_FRAME_BYTES:
            raise EventError(
                "too_large",
                _("Frames are limited to %(bytes)d bytes.")
                % {"bytes": settings.CONFAB_MAX_FRAME_BYTES},
            )
        try:
            event = json.loads(text_data)
        except RecursionError:
            raise too_deep() from None
        except ValueError:
            raise EventError("bad_json", _("The frame is not valid JSON.")) from None
        check_shape(text_data, event)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise unknown_type()
        if event["type"] not in EVENT_FORMS:
            raise unknown_type()
        return event

    def _validate(self, event):
        """The event's fields, cleaned; only a send's form touches the database."""
        form = EVENT_FORMS[event["type"]](event, user=self.user)
        if not form.is_valid():
            raise EventError("invalid", error_text(form))
        return form.cleaned_data

    def _validate_and_prepare(self, event, prepare):
        """A send in one trip to the database thread, which all sockets share; made as the
        user reads now (active: the session check says so)."""
        user = sessions.check(self.session_key, self.user.pk)
        data = self._validate(event)
        return data, prepare(user, data)

    async def sign_out(self):
        """The socket's session ended: closed as a socket that was never signed in is
        closed (4401), it takes nothing more from the hub or the layer, starts nothing."""
        self.signed_out = True
        hub.detach(self)
        for conversation_id in self.conversations:
            hub.leave(conversation_id, self)
        await self.close(code=4401)

    async def session_check(self, message):
        """The user signed out, changed their password or was disabled (in any process)."""
        if self.signed_out:
            return
        if message.get("ended"):  # a sign-out: only that session's sockets end
            if message["ended"] == self.session_key:
                await self.sign_out()
            return
        try:
            await database_sync_to_async(sessions.check)(self.session_key, self.user.pk)
        except SessionEnded:
            await self.sign_out()

    async def send_event(self, type, **fields):
        await self.send(text_data=json.dumps({"type": type, **fields}, ensure_ascii=False))

    async def dispatch(self, message):
        # channels closes stale database connections before every handler: a hop to the
        # one thread all database work of the process shares, so under load every event
        # (a refusal, a relayed frame) would queue there first. Not needed here: this
        # consumer reaches the database only through database_sync_to_async, which closes
        # stale connections itself before and after each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def relay(self, message):
        """An event from the channel layer, unless this process's hub delivered it already."""
        if (
            message.get("origin") == PROCESS_ID
            or message.get("skip") == self.channel_name
            or self.signed_out
        ):
            return
        event = message["event"]
        await self.send(text_data=json.dumps(event, ensure_ascii=False))
        if event["type"] == "message.created" and event["message"]["status"] == "streaming":
            # A reply another process runs: ask its runner for the frames.
            await self.ask_runners(event["message"]["conversation"])

    async def ask_runners(self, conversation_id):
        self.watching_runners.add(str(conversation_id))
        await self.channel_layer.group_send(
            runners_group(conversation_id),
            {
                "type": "runner.snapshot",
                "conversation": str(conversation_id),
                # The snapshot and the frames after it come through this process's mailbox.
                "reply_to": mailbox.address(),
                "socket": self.channel_name,
                "origin": PROCESS_ID,
            },
        )

    async def join(self, conversation_id):
        """Receive a conversation's live events, from this process and from others."""
        conversation_id = str(conversation_id)
        if conversation_id not in self.conversations:
            self.conversations.add(conversation_id)
            await self.channel_layer.group_add(
                conversation_group(conversation_id), self.channel_name
            )
        hub.join(conversation_id, self)

    async def subscribe(self, conversation_id, streaming=()):
        """Join a conversation's live events, then catch up on what is in flight, and on
        the end of replies the client still shows as streaming."""
        conversation_id = str(conversation_id)
        await self.join(conversation_id)
        # Snapshots of this process's replies are taken right after joining the hub, with
        # no await in between, so every later frame carries text the snapshot does not.
        running = {g for g in generations.values() if g.conversation_id == conversation_id}
        local = [snapshot for g in running for snapshot in g.snapshots()]
        for snapshot in local:
            await self.send(text_data=json.dumps(snapshot, ensure_ascii=False))
        await reap(conversation_id)  # replies whose runner died end now, not in a while
        shown = {s["message"]["id"] for s in local}
        elsewhere = await _streaming_replies(conversation_id, shown, self.language)
        for message in elsewhere:
            # The checkpoint, until the runner that owns the reply sends its snapshot.
            await self.send_event("message.snapshot", message=message, seq=0, checkpoint=True)
        if elsewhere:
            await self.ask_runners(conversation_id)
        # A reply's end is sent once per socket: asking again for replies it was told of
        # gets nothing, so repeated subscribes cannot multiply what the server sends.
        streaming = [str(message_id) for message_id in streaming]
        streaming = [message_id for message_id in streaming if message_id not in self.done_sent]
        for message in await _ended_replies(conversation_id, streaming, self.language):
            if len(self.done_sent) >= DONE_REMEMBERED:
                self.done_sent.clear()
            self.done_sent.add(message["id"])
            await self.send_event("message.done", message=message)

    async def on_subscribe(self, event):
        data = self._validate(event)
        if not await self._owns_conversation(data["conversation"]):
            raise EventError("not_found", _("No such conversation."))
        await self.subscribe(data["conversation"], data["streaming"])

    async def on_send(self, event):
        await self._send(event, prepare_send)

    async def on_edit(self, event):
        await self._send(event, prepare_edit)

    async def _send(self, event, prepare):
        data, prepared = await admission.admit(self._validate_and_prepare, event, prepare)
        client_id = str(data["client_id"]) if data.get("client_id") else None
        await self.join(prepared.conversation_id)
        if prepared.duplicate:
            # A send retried after a reconnect: the same messages again, to this tab only.
            for message in prepared.created:
                await self.send_event("message.created", message=message, client_id=client_id)
            return
        if prepared.created_conversation:
            await self.send_event(
                "conversation.created", conversation=prepared.conversation, client_id=client_id
            )
        await self._launch(prepared, client_id)

    async def on_regenerate(self, event):
        prepared = await admission.admit(self._validate_and_regenerate, event)
        await self.join(prepared.conversation_id)
        await self._launch(prepared, None)

    def _validate_and_regenerate(self, event):
        user = sessions.check(self.session_key, self.user.pk)
        return prepare_regenerate(user, self._validate(event))

    @database_sync_to_async
    def _owns_conversation(self, conversation_id):
        sessions.check(self.session_key, self.user.pk)
        return Conversation.objects.for_user(self.user).filter(id=conversation_id).exists()

    @database_sync_to_async
    def _owned_message(self, message_id):
        sessions.check(self.session_key, self.user.pk)
        return Message.objects.for_user(self.user).filter(id=message_id).first()

    async def _launch(self, prepared, client_id):
        await launch(
            prepared,
            user_id=self.user.pk,
            language=self.language,
            client_id=client_id,
            after=loop.after_step,
            # A new conversation's own tab heard of it already; its others, not yet.
            except_channel=self.channel_name if prepared.created_conversation else None,
        )

    async def on_stop(self, event):
        message_id = str(self._validate(event)["message"])
        reply = await self._owned_message(message_id)
        if reply is None:
            raise EventError("not_found", _("No such message."))
        if generation := generations.get(message_id):
            generation.stop()
        elif reply.role == Message.Role.TOOL and await loop.stop(reply):
            pass  # a call this process runs, or one waiting for approval: stopped
        elif reply.status == Message.Status.STREAMING:
            # Its runner lives in another process: the layer takes the stop there.
            await self.channel_layer.group_send(
                runners_group(reply.conversation_id),
                {
                    "type": "runner.stop",
                    "conversation": str(reply.conversation_id),
                    "message": message_id,
                    "origin": PROCESS_ID,
                },
            )
        else:
            raise EventError("not_running", _("This reply is not being generated."))

    async def on_approve(self, event):
        data = self._validate(event)
        await database_sync_to_async(sessions.check)(self.session_key, self.user.pk)
        message_id = str(data["message"])
        then = await loop.decide(self.user, message_id, data["allow"], data["always"],
                                 self.language)  # fmt: skip
        in_background(then)  # the call runs as a reply does: not in this handler


@database_sync_to_async
def _ended_replies(conversation_id, message_ids, language):
    if not message_ids:
        return []
    replies = Message.objects.filter(conversation_id=conversation_id, id__in=message_ids).exclude(
        status=Message.Status.STREAMING
    )
    with translation.override(language):
        return [finished_message(reply) for reply in replies]


class EventBudget:
    """A token bucket: `burst` events at once, then `per_minute` a minute. No clock is read
    but the process's own, and nothing is shared: the cost of the check is nil."""

    def __init__(self, burst, per_minute):
        self.burst, self.rate_s = burst, per_minute / 60
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self):
        """0 when the event may go ahead, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate_s)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return max(1, math.ceil((1 - self.tokens) / self.rate_s)) if self.rate_s else 60


def unknown_type():
    return EventError(
        "unknown_type",
        _("Each event needs a type: %(types)s.") % {"types": ", ".join(EVENT_FORMS)},
    )


def too_deep():
    return EventError(
        "too_deep", _("Events nest at most %(depth)d levels deep.") % {"depth": MAX_DEPTH}
    )


def check_shape(text, event):
    """Refuse an event nested deeper than MAX_DEPTH, or with text that cannot be stored or
    sent back (a lone surrogate, a NUL). Walks the event only when its text could hold one:
    more brackets than MAX_DEPTH, or a suspect escape."""
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    escaped = SUSPECT_ESCAPE.search(text) is not None
    if not (deep or escaped):
        return
    pending = [(event, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if escaped and not _storable(value):
                raise EventError(
                    "bad_unicode",
                    _("The frame holds text that is not valid Unicode, or a NUL character."),
                )
            continue
        if isinstance(value, dict):
            children = [*value, *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise too_deep()
        pending.extend((child, depth + 1) for child in children)


def _storable(text):
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def language_of(scope):
    """The socket's UI language, chosen as Django chooses it for a page: the language
    cookie, else the browser's Accept-Language, else the default."""
    cookie = scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME)
    headers = dict(scope.get("headers", ()))
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates = [cookie] if cookie else []
    candidates += [code for code, _ in trans_real.parse_accept_lang_header(accept)]
    for code in candidates:
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


@database_sync_to_async
def _streaming_replies(conversation_id, skip_ids, language):
    replies = (
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .exclude(id__in=skip_ids)
        .select_related("model")
    )
    # A tool's call comes as the page shows it: it has no frames to draw it from.
    with translation.override(language):
        return [
            finished_message(m) if m.role == Message.Role.TOOL else m.to_dict() for m in replies
        ]
