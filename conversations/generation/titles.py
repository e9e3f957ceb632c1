"""Titles: after a conversation's first reply, a short title written by a model.

The model is the one an administrator chose in Site settings, else the conversation's own,
unless the administrator turned titles off there, or the model is the bundled demo model
(its titles read worse than the first message). The request is small (24 tokens at most)
and recorded in the usage ledger like any other. What comes back is cleaned to one line of
plain text; a failure, or an answer that is no title, leaves the first message as the title.
"""

import logging
import re

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
MAX_TITLE_CHARS = 60
MAX_TITLE_WORDS = 10
# A label some models put before the title: "Title: …", "标题：…".
LABEL = re.compile(r"^\s*(?:title|标题)\s*[:：]\s*", re.IGNORECASE)
# Markdown a title never needs: emphasis, code, headings, quotes, list marks; a link keeps
# its text.
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
MARKUP = re.compile(r"[*_`~#>]+|^\s*(?:[-+•]|\d+[.)])\s+")
QUOTES = "\"'“”‘’「」『』«»"


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
        failure=completion.failure,
    )
    title = "" if completion.failure else clean_title(completion.choice(0).content)
    summary = await _save(request, outcome, title)
    if summary is not None:
        await publish_to_user(user_id, {"type": "conversation.updated", "conversation": summary})


def _job(conversation_id, user_id):
    """The title request, reserved against the user's quotas like any other (a title is
    written on their behalf, so it counts for them), or None: no title is due, or the user
    has no quota left for one."""
    conversation = (
        Conversation.objects.select_related("owner")
        .filter(id=conversation_id, auto_title=True)
        .first()
    )
    if conversation is None:
        return None
    # Only after the first answer, and only one that says something: a turn's tool steps
    # before it (calls, their results) do not count.
    answers = conversation.messages.filter(role=Message.Role.ASSISTANT, tool_calls=[])
    replies = list(answers.exclude(content="").select_related("parent").order_by("created")[:2])
    if len(replies) != 1 or answers.filter(created__lt=replies[0].created).exists():
        return None
    asked = replies[0].parent
    while asked is not None and asked.role != Message.Role.USER:
        asked = asked.parent
    if asked is None:
        return None
    site = SiteSettings.load()
    if not site.titles:
        return None
    chosen = site.title_model_id or conversation.model_id
    model = LanguageModel.objects.available().filter(id=chosen).first()
    if model is None or model.provider.bundled:
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


def clean_title(text):
    """A model's answer as a title: one line of plain text, without code fences, quotes,
    Markdown or a "Title:" label; "" when it is no title (empty, over-long, several
    sentences), and the first message stays the title."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("```")
    ]
    if not lines:
        return ""
    title = LABEL.sub("", lines[0])
    title = MARKUP.sub("", LINK.sub(r"\1", title))
    title = " ".join(title.split()).strip(QUOTES + " ").rstrip("。.!！")
    title = title.strip(QUOTES + " ")
    too_long = len(title) > MAX_TITLE_CHARS or len(title.split()) > MAX_TITLE_WORDS
    return "" if too_long or len(lines) > 2 else title


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
