"""Optional embeddings: when an administrator picks an embedding model (Site settings), each
file's passages get vectors from its provider's `/v1/embeddings`, and the search tool ranks by
meaning as well as by words (reciprocal rank fusion of the two rankings).

Batched (CONFAB_EMBEDDING_BATCH passages a request); rate-limit aware (a 429 waits its
Retry-After, at most CONFAB_EMBEDDING_MAX_WAIT_S, then tries again, a few times); resumable
(each batch is stored as it comes, so a file left half done, by a limit or a restart, carries
on from there when the reaper takes it up again). Every request is a row in the usage
ledger, reserved under the uploader's quotas before it is sent, like any model call.
"""

import array
import asyncio
import logging
import math

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import upstream
from conversations.generation.admission import EventError, lock, reserve
from conversations.generation.settle import Request
from conversations.models import File, Message, Passage, SiteSettings, UsageRecord
from conversations.upstream.events import UpstreamError
from conversations.usage import Usage, estimate_prompt_tokens

logger = logging.getLogger(__name__)

RETRIES = 4


def model():
    """The embedding model an administrator picked, if it is still available."""
    site = SiteSettings.objects.select_related("embedding_model__provider").filter(pk=1).first()
    chosen = site.embedding_model if site else None
    if chosen is None or not chosen.enabled or not chosen.provider.enabled:
        return None
    return chosen


def pack(vector):
    return array.array("f", vector).tobytes()


def unpack(data):
    vector = array.array("f")
    vector.frombytes(bytes(data))
    return vector


async def embed(file_id):
    """Vectors for a ready file's passages that have none yet, a batch at a time."""
    chosen = await database_sync_to_async(model)()
    if chosen is None:
        return
    while batch := await database_sync_to_async(_next_batch)(file_id):
        try:
            vectors, _usage = await _ask(chosen, file_id, [p.text for p in batch])
        except (UpstreamError, EventError) as error:
            # Left for later: the reaper resumes files with passages still to embed.
            logger.warning("embedding file %s paused: %s", file_id, error)
            return
        await database_sync_to_async(_store)(file_id, batch, vectors, chosen)


def _next_batch(file_id):
    missing = Passage.objects.filter(file_id=file_id, embedding__isnull=True)
    return list(missing.order_by("ordinal")[: settings.CONFAB_EMBEDDING_BATCH])


async def _ask(chosen, file_id, texts):
    """One embeddings request, reserved and then settled in the ledger; 429s waited out."""
    request = await database_sync_to_async(_reserve)(chosen, file_id, texts)
    status, usage, vectors = Message.Status.FAILED, None, None
    try:
        for attempt in range(RETRIES + 1):
            try:
                vectors, reported = await upstream.embeddings(
                    chosen.provider, chosen.upstream_id, texts
                )
                status = Message.Status.COMPLETE
                usage = Usage.from_api(reported) if isinstance(reported, dict) else None
                return vectors, usage
            except UpstreamError as error:
                wait = getattr(error, "retry_after", None)
                if error.status != 429 or attempt == RETRIES:
                    raise
                wait = min(wait if wait is not None else 2**attempt,
                           settings.CONFAB_EMBEDDING_MAX_WAIT_S)  # fmt: skip
                await asyncio.sleep(wait)
    finally:
        await database_sync_to_async(_settle)(request, status, usage, texts)


def _reserve(chosen, file_id, texts):
    file = File.objects.select_related("owner").get(id=file_id)
    request = Request.to(
        chosen,
        user_id=file.owner_id,
        conversation_id=str(file.conversation_id) if file.conversation_id else None,
        messages=[{"role": "user", "content": text} for text in texts],
        source=UsageRecord.Source.EMBEDDING,
    )
    with transaction.atomic():
        lock(file.owner)
        # An embedding generates nothing: what it may cost is its input.
        reserve(file.owner, request, {"max_tokens": 0})
    return request


def _settle(request, status, usage, texts):
    if usage is None or not usage.prompt_tokens:
        # What the provider did not report is estimated: the texts, without per-message
        # overhead (an embedding has no chat template).
        tokens = estimate_prompt_tokens([{"content": t} for t in texts]) - 4 * len(texts)
        usage = Usage(tokens, 0, tokens, estimated=True)
    usage.total_tokens = usage.prompt_tokens
    price = request.price_in_effect()
    UsageRecord.objects.filter(request_id=request.id, status=Message.Status.STREAMING).update(
        status=status,
        estimated=usage.estimated,
        cost=price.cost(usage) if price else 0,
        **usage.as_fields(),
    )


def _store(file_id, batch, vectors, chosen):
    with transaction.atomic():
        for passage, vector in zip(batch, vectors, strict=True):
            Passage.objects.filter(id=passage.id).update(embedding=pack(vector))
        File.objects.filter(id=file_id).update(
            embedded=Passage.objects.filter(file_id=file_id, embedding__isnull=False).count(),
            embedding_model=chosen.upstream_id,
            checkpointed=timezone.now(),
        )


async def query_vector(text, user_id):
    """The vector of a search's query (a ledger row of its own), or None without a model."""
    chosen = await database_sync_to_async(model)()
    if chosen is None:
        return None
    try:
        vectors, _ = await _ask_for_user(chosen, user_id, text)
    except (UpstreamError, EventError) as error:
        logger.warning("embedding a query failed: %s", error)
        return None
    return vectors[0]


async def _ask_for_user(chosen, user_id, text):
    request = await database_sync_to_async(_reserve_query)(chosen, user_id, text)
    status, usage = Message.Status.FAILED, None
    try:
        vectors, reported = await upstream.embeddings(chosen.provider, chosen.upstream_id, [text])
        status = Message.Status.COMPLETE
        usage = Usage.from_api(reported) if isinstance(reported, dict) else None
        return vectors, usage
    finally:
        await database_sync_to_async(_settle)(request, status, usage, [text])


def _reserve_query(chosen, user_id, text):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(pk=user_id)
    request = Request.to(
        chosen, user_id=user_id, messages=[{"role": "user", "content": text}],
        source=UsageRecord.Source.EMBEDDING,
    )  # fmt: skip
    with transaction.atomic():
        lock(user)
        reserve(user, request, {"max_tokens": 0})
    return request


def nearest(file_ids, vector, limit):
    """The passages of these files whose embeddings are closest to `vector` (cosine)."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    scored = []
    passages = Passage.objects.filter(file_id__in=file_ids, embedding__isnull=False)
    for passage in passages.select_related("file"):
        other = unpack(passage.embedding)
        if len(other) != len(vector):
            continue  # made by another model
        dot = sum(a * b for a, b in zip(vector, other, strict=True))
        scored.append((dot / (norm * (math.sqrt(sum(x * x for x in other)) or 1.0)), passage))
    scored.sort(key=lambda item: (-item[0], item[1].ordinal))
    return [passage for _, passage in scored[:limit]]


def stalled():
    """Ready files with passages still to embed, not touched for a while: their ids."""
    if model() is None:
        return []
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_STALE_AFTER_S)
    waiting = File.objects.filter(
        status=File.Status.READY, checkpointed__lt=cutoff, passages__embedding__isnull=True
    ).distinct()
    claimed = []
    for file_id in waiting.values_list("id", flat=True)[:20]:
        if File.objects.filter(id=file_id, checkpointed__lt=cutoff).update(
            checkpointed=timezone.now()
        ):
            claimed.append(file_id)
    return claimed
