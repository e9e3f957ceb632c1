"""A file's text made ready: extracted in worker processes, cut into passages, stored, and
every step told to its owner's tabs (`file.updated`).

Extraction is CPU work in pure Python (pypdf): in a thread it would still take the GIL from
the event loop, so it runs in a small pool of processes (CONFAB_FILE_WORKERS). The event
loop only awaits it; the database gets one write per batch of pages (the progress) and one
transaction for the passages. A failed file says why and holds nothing else up: other
files, and the chat, go on.

Nothing here must survive in memory: a file whose process ended mid-way keeps its
`processing` row, stops being refreshed, and the reaper of any process starts it again.
"""

import asyncio
import contextvars
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.fanout import publish_to_user
from conversations.files import embeddings, extraction
from conversations.models import File, Passage
from conversations.usage import estimate_tokens

logger = logging.getLogger(__name__)

# Pages of a PDF read per call to a worker: the progress moves after each batch.
PDF_BATCH = 25
# The files this process is working on, by id (str).
working = {}
_pool = None


def pool():
    """The worker processes, started on first use. `spawn`: a fork of a process running
    threads and an event loop would copy locks held by other threads."""
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=settings.CONFAB_FILE_WORKERS,
            mp_context=multiprocessing.get_context("spawn"),
        )
    return _pool


def shutdown():
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def start(file_id):
    """Make a file ready in the background; the task, kept until it ends."""
    file_id = str(file_id)
    if file_id in working:
        return working[file_id]
    # A context of its own: one inherited from the request that uploaded it would tie the
    # task's database calls to that request's thread, gone once it has been answered.
    task = asyncio.create_task(
        _process(file_id), name=f"file-{file_id}", context=contextvars.Context()
    )
    working[file_id] = task
    task.add_done_callback(lambda _: working.pop(file_id, None))
    return task


async def _process(file_id):
    file = await database_sync_to_async(File.objects.filter(id=file_id).first)()
    if file is None or file.status != File.Status.PROCESSING:
        return
    loop = asyncio.get_running_loop()
    try:
        data = await asyncio.to_thread(_read, file)
        if file.kind == File.Kind.PDF:
            total = await loop.run_in_executor(pool(), extraction.page_count, data)
            await _progress(file, 5, pages=total)
            parts = []
            for first in range(0, total, PDF_BATCH):
                last = first + PDF_BATCH
                parts += await loop.run_in_executor(
                    pool(), extraction.extract, file.kind, data, first, last
                )
                await _progress(file, 5 + 85 * min(last, total) // max(total, 1))
        else:
            parts = await loop.run_in_executor(pool(), extraction.extract, file.kind, data)
        pieces = await loop.run_in_executor(pool(), extraction.passages, parts)
        await database_sync_to_async(_store)(file_id, pieces)
    except extraction.ExtractionFailed as failure:
        await database_sync_to_async(_fail)(file_id, str(failure))
    except (BrokenProcessPool, OSError) as error:
        logger.warning("file %s could not be processed: %s", file_id, type(error).__name__)
        await database_sync_to_async(_fail)(file_id, "Confab could not read this file.")
    await _tell(file_id)
    await embeddings.embed(file_id)  # when the site has an embedding model


def _read(file):
    with file.blob.open("rb") as stored:
        return stored.read()


async def _progress(file, percent, pages=None):
    file.progress = percent
    fields = {"progress": percent, "checkpointed": timezone.now()}
    if pages is not None:
        file.pages = fields["pages"] = pages
    await database_sync_to_async(File.objects.filter(id=file.id).update)(**fields)
    await publish_to_user(file.owner_id, {"type": "file.updated", "file": file.to_dict()})


def _store(file_id, pieces):
    """The passages, and the file ready, in one transaction."""
    with transaction.atomic():
        Passage.objects.filter(file_id=file_id).delete()  # a restart's leftovers
        Passage.objects.bulk_create(
            Passage(file_id=file_id, ordinal=i, page=page, text=text)
            for i, (page, text) in enumerate(pieces)
        )
        File.objects.filter(id=file_id).update(
            status=File.Status.READY,
            progress=100,
            tokens=sum(estimate_tokens(text) for _, text in pieces),
            checkpointed=timezone.now(),
        )


def _fail(file_id, error):
    File.objects.filter(id=file_id).update(
        status=File.Status.FAILED, error=error, checkpointed=timezone.now()
    )


async def _tell(file_id):
    file = await database_sync_to_async(File.objects.get)(id=file_id)
    await publish_to_user(file.owner_id, {"type": "file.updated", "file": file.to_dict()})


def stalled():
    """Files left `processing` by a process that ended, claimed for this one: their ids."""
    cutoff = timezone.now() - timedelta(seconds=settings.CONFAB_STALE_AFTER_S)
    claimed = []
    stale = File.objects.filter(status=File.Status.PROCESSING, checkpointed__lt=cutoff)
    for file_id in stale.exclude(id__in=list(working)).values_list("id", flat=True):
        # Claimed by refreshing it: another process's reaper then finds it fresh.
        if File.objects.filter(id=file_id, checkpointed__lt=cutoff).update(
            checkpointed=timezone.now()
        ):
            claimed.append(file_id)
    return claimed


def purge_unsent():
    """Files uploaded but never sent or added to a project, a day on: deleted."""
    cutoff = timezone.now() - timedelta(days=1)
    unsent = File.objects.filter(conversation=None, project=None, created__lt=cutoff)
    return unsent.delete()[0]


async def resume_stalled():
    for file_id in await database_sync_to_async(stalled)():
        start(file_id)
    for file_id in await database_sync_to_async(embeddings.stalled)():
        file_id = str(file_id)
        if file_id not in working:  # embedding left half done (a rate limit, a restart)
            task = asyncio.create_task(embeddings.embed(file_id), context=contextvars.Context())
            working[file_id] = task
            task.add_done_callback(lambda _, key=file_id: working.pop(key, None))


async def ready(file_id, timeout_s=60):
    """The file, once this process has finished working on it (for tests and scripts)."""
    if task := working.get(str(file_id)):
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(task)
    return await database_sync_to_async(File.objects.get)(id=file_id)
