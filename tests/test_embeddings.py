"""Embeddings through the fake upstream's /v1/embeddings: a file's passages embedded in
batches, a rate limit waited out, a pause resumed, every request counted in the ledger (and
one the uploader's quota cannot hold never sent); and the search tool ranking by meaning as
well as by words."""

import logging

import pytest
from channels.db import database_sync_to_async

from conversations.files import processing
from conversations.models import LanguageModel, Quota, SiteSettings, UsageRecord
from tests import documents
from tests.fake_upstream import agent, calls, embeddings, json_answer, reply
from tests.helpers import send_event, upload_file

pytestmark = pytest.mark.django_db(transaction=True)


def meaning(text):
    """The fake model's vectors: storms (and tempests) one way, everything else another."""
    text = text.lower()
    return [1.0 if ("4,212" in text or "tempest" in text) else 0.0, 1.0]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CONFAB_EMBEDDING_BATCH = 16


@pytest.fixture
def embedder(provider, fake_upstream):
    """The site's embedding model, answering `meaning` (after a script of its own first)."""

    def choose(*first):
        answers = list(first)

        def play(body):
            return answers.pop(0) if answers else embeddings(meaning)(body)

        fake_upstream.script("embedder", play)
        model = LanguageModel.objects.create(provider=provider, upstream_id="embedder")
        SiteSettings.objects.update_or_create(pk=1, defaults={"embedding_model": model})
        return model

    return choose


def embedding_requests(fake_upstream):
    return [r for r in fake_upstream.requests if r["path"].endswith("/embeddings")]


async def test_a_files_passages_are_embedded_in_batches_through_a_rate_limit(
    alice, embedder, fake_upstream
):
    limited = json_answer({"error": {"message": "slow down"}}, 429, "Retry-After: 0\r\n")
    await database_sync_to_async(embedder)(limited)
    report = await upload_file(alice, "report.pdf", documents.long_report(30))
    report = await processing.ready(report.id)  # reading, then embedding

    passages = await database_sync_to_async(report.passages.count)()
    assert (report.embedded, report.embedding_model) == (passages, "embedder")
    sent = embedding_requests(fake_upstream)
    assert all(len(r["body"]["input"]) <= 16 for r in sent)
    assert sum(len(r["body"]["input"]) for r in sent) == passages + 16  # one batch again
    rows = await database_sync_to_async(list)(
        UsageRecord.objects.filter(source="embedding").order_by("created")
    )
    assert len(rows) == len(sent) - 1  # the 429 and its retry are one request
    assert all(r.status == "complete" and not r.estimated and r.prompt_tokens for r in rows)
    assert all(r.user_id == alice.pk and r.total_tokens == r.prompt_tokens for r in rows)


async def test_embedding_stopped_half_way_resumes(alice, embedder, fake_upstream, settings):
    broken = json_answer({"error": {"message": "down"}}, 500)
    await database_sync_to_async(embedder)(broken)
    report = await upload_file(alice, "report.pdf", documents.long_report(20))
    assert report.embedded == 0  # paused at the first batch, the file ready all the same
    assert report.status == "ready"
    failed = await database_sync_to_async(UsageRecord.objects.get)(source="embedding")
    assert failed.status == "failed"

    settings.CONFAB_STALE_AFTER_S = 0
    await processing.resume_stalled()
    report = await processing.ready(report.id)
    assert report.embedded == await database_sync_to_async(report.passages.count)()


async def test_an_embedding_the_quota_cannot_hold_is_never_sent_and_waits_for_room(
    alice, embedder, fake_upstream, settings, caplog
):
    caplog.set_level(logging.WARNING, logger="conversations")
    await database_sync_to_async(embedder)()
    quota = await database_sync_to_async(Quota.objects.create)(user=alice, max_tokens=50)
    report = await upload_file(alice, "report.pdf", documents.long_report(5))

    assert (report.status, report.embedded, report.error) == ("ready", 0, "")  # words only
    assert embedding_requests(fake_upstream) == []
    assert not await database_sync_to_async(UsageRecord.objects.exists)()  # nothing held
    (paused,) = [r.getMessage() for r in caplog.records if "embedding file" in r.getMessage()]
    assert paused.startswith(f"embedding file {report.id} paused: You have used 0 of your 50 "
                             "tokens this month and this message may need up to ")  # fmt: skip

    # With room again, the reaper carries on from where it stopped.
    await database_sync_to_async(quota.delete)()
    settings.CONFAB_STALE_AFTER_S = 0
    await processing.resume_stalled()
    report = await processing.ready(report.id)
    assert report.embedded == await database_sync_to_async(report.passages.count)() > 0
    assert embedding_requests(fake_upstream)


async def test_the_search_tool_finds_by_meaning_what_no_word_matches(
    alice, embedder, provider, fake_upstream, sockets
):
    await database_sync_to_async(embedder)()
    fake_upstream.script(
        "reader",
        agent(calls(("search_files", {"query": "tempests"})), reply(["4,212 [1]."])),
    )
    model = await database_sync_to_async(LanguageModel.objects.create)(
        provider=provider, upstream_id="reader", context_window=4000, max_output_tokens=200
    )
    report = await upload_file(alice, "report.pdf", documents.long_report(100))
    report = await processing.ready(report.id)
    tab = await sockets(alice)
    await tab.send(**send_event("Tempests?", model=str(model.public_id), files=[str(report.id)]))
    while True:
        event = await tab.receive(timeout=30)
        if event["type"] == "message.done" and event["message"]["role"] == "tool":
            break
    assert documents.PAGE_80_FACT in event["message"]["content"].split("\n\n[")[0]
    queries = [r for r in embedding_requests(fake_upstream) if r["body"]["input"] == ["tempests"]]
    assert len(queries) == 1  # the query's own embedding, counted as well
    rows = await database_sync_to_async(UsageRecord.objects.filter(source="embedding").count)()
    assert rows == len(embedding_requests(fake_upstream))
    while not (event["type"] == "message.done" and event["message"]["role"] == "assistant"):
        event = await tab.receive(timeout=30)  # the turn's answer, before the test ends
    assert event["message"]["content"] == "4,212 [1]."
