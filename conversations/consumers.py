"""The chat websocket: validates client events and turns them into runner calls.

Handlers are awaited one at a time per socket, so nothing here streams: a reply runs in
its own task (conversations.runner) and reaches this socket through the hub.
"""

import json
import logging
import time
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from conversations import runner, upstream
from conversations.fanout import (
    PROCESS_ID,
    conversation_group,
    hub,
    publish,
    publish_to_user,
    runners_group,
    user_group,
)
from conversations.forms import EVENT_FORMS, error_text
from conversations.models import Conversation, LanguageModel, Message, newest_branch
from conversations.reaper import reap
from conversations.runner import generations
from conversations.usage import estimate_prompt_tokens

logger = logging.getLogger(__name__)


class EventError(Exception):
    """A client event that cannot be carried out; answered with an `error` event."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        self.conversations = set()
        self.watching_runners = set()  # conversations whose runners in other processes we asked
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if not hasattr(self, "conversations"):
            return
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
        client_id = None
        try:
            event = self._decode(text_data, bytes_data)
            client_id = event.get("client_id") if isinstance(event.get("client_id"), str) else None
            form = await database_sync_to_async(self._validate)(event)
            await getattr(self, "on_" + event["type"])(form.cleaned_data)
        except EventError as error:
            await self.send_event(
                "error", code=error.code, message=str(error), client_id=client_id, **error.extra
            )
        except Exception:
            logger.exception("websocket event failed")
            await self.send_event(
                "error", code="internal", message="Something went wrong.", client_id=client_id
            )

    def _decode(self, text_data, bytes_data):
        if text_data is None:
            raise EventError("bad_frame", "Send JSON text frames, not binary.")
        if len(text_data) > settings.CONFAB_MAX_FRAME_BYTES:
            raise EventError(
                "too_large", f"Frames are limited to {settings.CONFAB_MAX_FRAME_BYTES} bytes."
            )
        try:
            event = json.loads(text_data)
        except ValueError:
            raise EventError("bad_json", "The frame is not valid JSON.") from None
        if not isinstance(event, dict) or event.get("type") not in EVENT_FORMS:
            raise EventError(
                "unknown_type", "Each event needs a type: " + ", ".join(EVENT_FORMS) + "."
            )
        return event

    def _validate(self, event):
        form = EVENT_FORMS[event["type"]](event)
        if not form.is_valid():
            raise EventError("invalid", error_text(form))
        return form

    async def send_event(self, type, **fields):
        await self.send(text_data=json.dumps({"type": type, **fields}, ensure_ascii=False))

    async def relay(self, message):
        """An event from the channel layer, unless this process's hub delivered it already."""
        if message.get("origin") == PROCESS_ID or message.get("skip") == self.channel_name:
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
                "reply_to": self.channel_name,
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
        elsewhere = await _streaming_replies(conversation_id, {s["message"]["id"] for s in local})
        for message in elsewhere:
            # The checkpoint, until the runner that owns the reply sends its snapshot.
            await self.send_event("message.snapshot", message=message, seq=0, checkpoint=True)
        if elsewhere:
            await self.ask_runners(conversation_id)
        for message in await _ended_replies(conversation_id, streaming):
            await self.send_event("message.done", message=message)

    async def on_subscribe(self, data):
        if not await _owns_conversation(self.user, data["conversation"]):
            raise EventError("not_found", "No such conversation.")
        await self.subscribe(data["conversation"], data["streaming"])

    async def on_send(self, data):
        if not runner.accepting:
            raise EventError("unavailable", "The server is restarting. Try again.", retry_after=5)
        if len(runner.running_requests()) >= settings.CONFAB_MAX_GENERATIONS_PER_PROCESS:
            raise EventError("busy", "The server is busy. Try again shortly.", retry_after=5)
        prepared = await database_sync_to_async(_prepare_send)(self.user, data)
        conversation = prepared["conversation"]
        client_id = str(data["client_id"]) if data.get("client_id") else None
        if prepared["duplicate"]:
            # A send retried after a reconnect: the same messages again, to this tab only.
            await self.join(conversation.id)
            for message in (prepared["user_message"], *prepared["replies"]):
                await self.send_event("message.created", message=message.to_dict(),
                                      client_id=client_id)  # fmt: skip
            return
        await self.join(conversation.id)
        summary = {**conversation.to_dict(), "generating": True}
        if prepared["created_conversation"]:
            await self.send_event("conversation.created", conversation=summary, client_id=client_id)
        for message in (prepared["user_message"], *prepared["replies"]):
            event = {"type": "message.created", "message": message.to_dict()}
            if client_id:
                event["client_id"] = client_id
            await publish(conversation.id, event)
        runner.Generation(
            prepared["replies"],
            provider=prepared["model"].provider,
            model=prepared["model"],
            messages=prepared["messages"],
            body=prepared["body"],
            user_id=self.user.pk,
        ).start()
        # The sidebar of the user's other tabs: a new conversation, or one now generating.
        created = prepared["created_conversation"]
        await publish_to_user(
            self.user.pk,
            {
                "type": "conversation.created" if created else "conversation.updated",
                "conversation": summary,
            },
            except_channel=self.channel_name if created else None,
        )

    async def on_stop(self, data):
        message_id = str(data["message"])
        reply = await _owned_message(self.user, message_id)
        if reply is None:
            raise EventError("not_found", "No such message.")
        if generation := generations.get(message_id):
            generation.stop()
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
            raise EventError("not_running", "This reply is not being generated.")


@database_sync_to_async
def _owns_conversation(user, conversation_id):
    return Conversation.objects.for_user(user).filter(id=conversation_id).exists()


@database_sync_to_async
def _owned_message(user, message_id):
    return Message.objects.filter(
        id=message_id, conversation__in=Conversation.objects.for_user(user)
    ).first()


@database_sync_to_async
def _ended_replies(conversation_id, message_ids):
    if not message_ids:
        return []
    replies = Message.objects.filter(conversation_id=conversation_id, id__in=message_ids).exclude(
        status=Message.Status.STREAMING
    )
    return [reply.to_dict(with_html=True) for reply in replies]


@database_sync_to_async
def _streaming_replies(conversation_id, skip_ids):
    replies = Message.objects.filter(
        conversation_id=conversation_id, status=Message.Status.STREAMING
    ).exclude(id__in=skip_ids)
    return [reply.to_dict() for reply in replies]


def _prepare_send(user, data):
    """Everything a send writes, in one transaction: conversation, user message, reply."""
    conversations = Conversation.objects.for_user(user)
    if data["client_id"]:
        existing = (
            Message.objects.filter(client_id=data["client_id"], conversation__in=conversations)
            .select_related("conversation")
            .first()
        )
        if existing is not None:
            return {
                "conversation": existing.conversation,
                "created_conversation": False,
                "user_message": existing,
                "replies": list(existing.children.order_by("created")),
                "duplicate": True,
            }
        if Message.objects.filter(client_id=data["client_id"]).exists():
            raise EventError("invalid", "client_id: this id is already taken.")

    _check_limits(user)
    conversation = None
    if data["conversation"]:
        conversation = (
            conversations.select_related("model__provider").filter(id=data["conversation"]).first()
        )
        if conversation is None:
            raise EventError("not_found", "No such conversation.")

    model = data["model"] or _default_model(conversation)
    if model is None:
        raise EventError(
            "no_model", "No model is available. An administrator must add a provider first."
        )

    with transaction.atomic():
        running = (
            Message.objects.filter(conversation__owner=user, status=Message.Status.STREAMING)
            .values("parent_id")
            .distinct()
            .count()
        )
        if running >= settings.CONFAB_USER_MAX_CONCURRENT:
            raise EventError(
                "too_many",
                f"You already have {running} replies generating. Wait for one to finish "
                "or stop it, then try again.",
                retry_after=5,
            )
        created = conversation is None
        if created:
            conversation = Conversation.objects.create(
                owner=user, title=_title_from(data["content"]), model=model
            )
            history = []
        else:
            history = list(conversation.messages.order_by("created"))
        parent = _parent_for(history, data["parent"])
        if parent is not None and parent.status == Message.Status.STREAMING:
            raise EventError("busy", "A reply is still being generated; stop it or wait.")
        now = timezone.now()
        user_message = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.USER,
            content=data["content"],
            client_id=data["client_id"],
            created=now,
        )
        params = {**conversation.params, **data["params"]}
        messages = _api_messages(conversation, history, user_message)
        body = upstream.build_body(model, messages, params, user.pk)
        prompt_estimate = estimate_prompt_tokens(messages)
        # With n > 1 each choice becomes a reply of its own, siblings under the message.
        replies = Message.objects.bulk_create(
            Message(
                conversation=conversation,
                parent=user_message,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model,
                model_name=model.upstream_id,
                params=params,
                created=now + timedelta(microseconds=index + 1),
                checkpointed=now,
                # An estimate until the provider reports usage (or never does).
                prompt_tokens=prompt_estimate,
                total_tokens=prompt_estimate,
                usage_estimated=True,
            )
            for index in range(body.get("n") or 1)
        )
        Conversation.objects.filter(id=conversation.id).update(updated=now, model=model)

    return {
        "conversation": conversation,
        "created_conversation": created,
        "user_message": user_message,
        "replies": replies,
        "duplicate": False,
        "model": model,
        "messages": messages,
        "body": body,
    }


def _check_limits(user):
    """At most CONFAB_USER_SENDS_PER_MINUTE sends a minute per user, in every process."""
    window = int(time.time() // 60)
    key = f"confab:sends:{user.pk}:{window}"
    cache.add(key, 0, timeout=120)
    sends = cache.incr(key)
    if sends > settings.CONFAB_USER_SENDS_PER_MINUTE:
        retry_after = 60 - int(time.time() % 60)
        raise EventError(
            "rate_limited",
            f"You have sent {settings.CONFAB_USER_SENDS_PER_MINUTE} messages this minute. "
            f"Try again in {retry_after} s.",
            retry_after=retry_after,
        )


def _default_model(conversation):
    available = LanguageModel.objects.available()
    if conversation is not None and conversation.model_id:
        model = available.filter(id=conversation.model_id).first()
        if model is not None:
            return model
    return available.first()


def _parent_for(history, parent_id):
    if parent_id is not None:
        for message in history:
            if message.id == parent_id:
                return message
        raise EventError("not_found", "No such message.")
    branch = newest_branch(history)
    return branch[-1] if branch else None


def _api_messages(conversation, history, user_message):
    """The branch that ends at the user's message, as Chat Completions messages."""
    by_id = {m.id: m for m in history}
    branch, message = [user_message], by_id.get(user_message.parent_id)
    while message is not None:
        branch.append(message)
        message = by_id.get(message.parent_id)
    messages = (
        [{"role": "system", "content": conversation.system_prompt}]
        if (conversation.system_prompt)
        else []
    )
    for message in reversed(branch):
        if message.content or message.role == Message.Role.USER:
            messages.append({"role": message.role, "content": message.content})
    return messages


def _title_from(content):
    title = " ".join(content.split())
    return title if len(title) <= 60 else title[:59].rstrip() + "…"
