"""Titles: after a conversation's first reply, a short title written by a model.

The model is the one an administrator chose in Site settings, else the conversation's own.
The request is small (24 tokens at most), recorded in the usage ledger like any other, and
a failure only leaves the first message as the title.
"""

import logging
import uuid

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from conversations.fanout import publish_to_user
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    SiteSettings,
    UsageRecord,
)
from conversations.upstream import ChatStream, UpstreamError, build_body
from conversations.usage import Usage

logger = logging.getLogger(__name__)

PROMPT = (
    "Write a title of at most six words for the conversation below, in the language the "
    "user writes in. Answer with the title only, without quotes.\n\n"
    "User: {question}\n\nAssistant: {answer}"
)


async def write_title(conversation_id, user_id):
    try:
        await _write_title(conversation_id, user_id)
    except Exception:
        logger.exception("writing a title for %s failed", conversation_id)


async def _write_title(conversation_id, user_id):
    job = await _job(conversation_id)
    if job is None:
        return
    model, messages = job
    body = build_body(model, messages, {"max_tokens": 24, "temperature": 0.3}, user_id)
    stream = ChatStream(model.provider, body)
    try:
        async for _ in stream:
            pass
    except UpstreamError as error:
        logger.info("no title for %s: %s", conversation_id, error)
        return
    title = _clean(stream.choice(0).content)
    usage = stream.usage or Usage.estimate(messages, stream.choice(0).content)
    summary = await _save(conversation_id, user_id, model, title, usage)
    if summary is not None:
        await publish_to_user(user_id, {"type": "conversation.updated", "conversation": summary})


@database_sync_to_async
def _job(conversation_id):
    conversation = Conversation.objects.filter(id=conversation_id, auto_title=True).first()
    if conversation is None:
        return None
    replies = list(
        conversation.messages.filter(role=Message.Role.ASSISTANT).select_related("parent")[:2]
    )
    if len(replies) != 1 or not replies[0].content or replies[0].parent is None:
        return None  # only after the first reply, and only one that says something
    chosen = SiteSettings.load().title_model_id or conversation.model_id
    model = LanguageModel.objects.available().filter(id=chosen).first()
    if model is None:
        return None
    question, answer = replies[0].parent.content[:2000], replies[0].content[:2000]
    prompt = PROMPT.format(question=question, answer=answer)
    return model, [{"role": "user", "content": prompt}]


def _clean(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    title = (lines[0] if lines else "").strip("\"'“”‘’「」*# ").rstrip("。.")
    return title if len(title) <= 60 else title[:59].rstrip() + "…"


@database_sync_to_async
def _save(conversation_id, user_id, model, title, usage):
    price = model.price_at(timezone.now())
    with transaction.atomic():
        UsageRecord.objects.create(
            request_id=uuid.uuid4(),
            user_id=user_id,
            conversation_id=conversation_id,
            provider=model.provider,
            model=model,
            model_name=model.upstream_id,
            status=Message.Status.COMPLETE,
            estimated=usage.estimated,
            cost=usage.cost if usage.cost is not None else (price.cost(usage) if price else 0),
            currency="USD" if usage.cost is not None or not price else price.currency,
            provider_cost=usage.cost,
            **usage.as_fields(),
        )
        if not title:
            return None
        updated = Conversation.objects.filter(id=conversation_id, auto_title=True).update(
            title=title
        )
    if not updated:
        return None
    conversation = Conversation.objects.get(id=conversation_id)
    return {**conversation.to_dict(), "generating": False}
