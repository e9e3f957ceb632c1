"""The chat websocket: validates client events and turns them into runner calls.

Handlers are awaited one at a time per socket, so nothing here streams: a reply runs in
its own task (conversations.runner) and reaches this socket through the hub.
"""

import json
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction
from django.utils import timezone

from conversations import upstream
from conversations.forms import EVENT_FORMS, error_text
from conversations.models import Conversation, LanguageModel, Message, newest_branch
from conversations.runner import Generation, generations, hub

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1_000_000


class EventError(Exception):
    """A client event that cannot be carried out; answered with an `error` event."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        self.conversations = set()
        await self.accept()

    async def disconnect(self, code):
        for conversation_id in getattr(self, "conversations", ()):
            hub.leave(conversation_id, self)

    async def receive(self, text_data=None, bytes_data=None):
        client_id = None
        try:
            event = self._decode(text_data, bytes_data)
            client_id = event.get("client_id") if isinstance(event.get("client_id"), str) else None
            form = await database_sync_to_async(self._validate)(event)
            await getattr(self, "on_" + event["type"])(form.cleaned_data)
        except EventError as error:
            await self.send_event("error", code=error.code, message=str(error), client_id=client_id)
        except Exception:
            logger.exception("websocket event failed")
            await self.send_event(
                "error", code="internal", message="Something went wrong.", client_id=client_id
            )

    def _decode(self, text_data, bytes_data):
        if text_data is None:
            raise EventError("bad_frame", "Send JSON text frames, not binary.")
        if len(text_data) > MAX_FRAME_BYTES:
            raise EventError("too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
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

    async def subscribe(self, conversation_id):
        """Join a conversation's live events, then catch up on what is in flight."""
        self.conversations.add(str(conversation_id))
        hub.join(conversation_id, self)
        # Snapshots of local replies are taken right after joining, with no await in
        # between, so every later frame carries text the snapshot does not.
        running = {g for g in generations.values() if g.conversation_id == str(conversation_id)}
        local = [snapshot for g in running for snapshot in g.snapshots()]
        local_ids = {s["message"]["id"] for s in local}
        for snapshot in local:
            await self.send(text_data=json.dumps(snapshot, ensure_ascii=False))
        for message in await _checkpointed_replies(conversation_id, local_ids):
            await self.send_event("message.snapshot", message=message, seq=0)

    async def on_subscribe(self, data):
        if not await _owns_conversation(self.user, data["conversation"]):
            raise EventError("not_found", "No such conversation.")
        await self.subscribe(data["conversation"])

    async def on_send(self, data):
        prepared = await database_sync_to_async(_prepare_send)(self.user, data)
        conversation = prepared["conversation"]
        if str(conversation.id) not in self.conversations:
            self.conversations.add(str(conversation.id))
            hub.join(conversation.id, self)
        if prepared["created_conversation"]:
            await self.send_event(
                "conversation.created",
                conversation=conversation.to_dict(),
                client_id=data.get("client_id") and str(data["client_id"]),
            )
        for message in (prepared["user_message"], *prepared["replies"]):
            event = {"type": "message.created", "message": message.to_dict()}
            if data.get("client_id"):
                event["client_id"] = str(data["client_id"])
            await hub.publish(conversation.id, event)
        if prepared["duplicate"]:
            return
        Generation(
            prepared["replies"],
            provider=prepared["model"].provider,
            model=prepared["model"],
            messages=prepared["messages"],
            body=prepared["body"],
            user_id=self.user.pk,
        ).start()

    async def on_stop(self, data):
        message_id = str(data["message"])
        if not await _owns_message(self.user, message_id):
            raise EventError("not_found", "No such message.")
        generation = generations.get(message_id)
        if generation is None:
            raise EventError("not_running", "This reply is not being generated.")
        generation.stop()


@database_sync_to_async
def _owns_conversation(user, conversation_id):
    return Conversation.objects.for_user(user).filter(id=conversation_id).exists()


@database_sync_to_async
def _owns_message(user, message_id):
    return Message.objects.filter(
        id=message_id, conversation__in=Conversation.objects.for_user(user)
    ).exists()


@database_sync_to_async
def _checkpointed_replies(conversation_id, skip_ids):
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
        body = upstream.build_body(model, [], params, user.pk)
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
            )
            for index in range(body.get("n") or 1)
        )
        Conversation.objects.filter(id=conversation.id).update(updated=now, model=model)

    body["messages"] = _api_messages(conversation, history, user_message)
    return {
        "conversation": conversation,
        "created_conversation": created,
        "user_message": user_message,
        "replies": replies,
        "duplicate": False,
        "model": model,
        "messages": body["messages"],
        "body": body,
    }


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
