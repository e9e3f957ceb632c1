"""Titles: after a conversation's first reply, a short title written by a model.

The model is the one an administrator chose in Site settings, else the conversation's own.
The request is small (24 tokens at most), recorded in the usage ledger like any other, and
a failure only leaves the first message as the title.
"""

import logging

from channels.db import database_sync_to_async
from django.db import transaction

from conversations.fanout import publish_to_user
from conversations.generation import admission
from conversations.generation.settle import Outcome, Reply, Request, settle
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    SiteSettings,
    UsageRecord,
)
from conversations.upstream import ChatStream, Completion, build_body

logger = logging.getLogger(__name__)

PROMPT = (
    "Write a title of at most six words for the conversation below, in the language the "
    "user writes in. Answer with the title only, without quotes.\n\n"
    "User: {question}\n\nAssistant: {answer}"
)
MAX_TITLE_TOKENS = 24
MAX_QUOTED_CHARS = 2000


async def write_title(conversation_id, user_id):
    try:
        await _write_title(conversation_id, user_id)
    except Exception:
        logger.exception("writing a title for %s failed", conversation_id)


async def _write_title(conversation_id, user_id):
    job = await database_sync_to_async(_job)(conversation_id, user_id)
    if job is None:
        return
    provider, body, request = job
    completion = Completion()
    async for event in ChatStream(provider, body):
        completion.add(event)
    if completion.failure is not None:
        logger.info("no title for %s: %s", conversation_id, completion.failure.code)
    outcome = Outcome(
        status=Message.Status.FAILED if completion.failure else Message.Status.COMPLETE,
        replies=(Reply.of(completion.choice(0)),),
        usage=completion.usage,
    )
    title = "" if completion.failure else _clean(completion.choice(0).content)
    summary = await _save(request, outcome, title)
    if summary is not None:
        await publish_to_user(user_id, {"type": "conversation.updated", "conversation": summary})


def _job(conversation_id, user_id):
    """The title request, reserved against the user's quotas like any other (a title is
    written on their behalf, so it counts for them), or None: no title is due, or the user
    has no quota left for one."""
    conversation = Conversation.objects.filter(id=conversation_id, auto_title=True).first()
    if conversation is None:
        return None
    # Only after the first answer, and only one that says something: a turn's tool steps
    # before it (calls, their results) do not count.
    answers = conversation.messages.filter(role=Message.Role.ASSISTANT, tool_calls=[])
    replies = list(answers.exclude(content="").order_by("created")[:2])
    if len(replies) != 1 or answers.filter(created__lt=replies[0].created).exists():
        return None
    asked = replies[0].parent
    while asked is not None and asked.role != Message.Role.USER:
        asked = asked.parent
    if asked is None:
        return None
    chosen = SiteSettings.load().title_model_id or conversation.model_id
    model = LanguageModel.objects.available().filter(id=chosen).first()
    if model is None:
        return None
    question = asked.content[:MAX_QUOTED_CHARS]
    answer = replies[0].content[:MAX_QUOTED_CHARS]
    messages = [{"role": "user", "content": PROMPT.format(question=question, answer=answer)}]
    params = {"max_tokens": MAX_TITLE_TOKENS, "temperature": 0.3}
    body = build_body(model, messages, params, user_id)
    request = Request.to(
        model,
        user_id=user_id,
        conversation_id=str(conversation_id),
        messages=messages,
        source=UsageRecord.Source.TITLE,
    )
    try:
        with transaction.atomic():
            admission.lock(conversation.owner)
            admission.reserve(conversation.owner, request, body)
    except admission.EventError as refusal:
        logger.info("no title for %s: %s", conversation_id, refusal.code)
        return None
    return model.provider, body, request


def _clean(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    title = (lines[0] if lines else "").strip("\"'“”‘’「」*# ").rstrip("。.")
    return title if len(title) <= 60 else title[:59].rstrip() + "…"


@database_sync_to_async
def _save(request, outcome, title):
    """The title request in the ledger, like any other; the title, if the conversation
    still takes one."""
    with transaction.atomic():
        settle(request, outcome)
        if not title:
            return None
        updated = Conversation.objects.filter(id=request.conversation_id, auto_title=True).update(
            title=title
        )
    if not updated:
        return None
    conversation = Conversation.objects.select_related("model").get(id=request.conversation_id)
    return {**conversation.to_dict(), "generating": False}
