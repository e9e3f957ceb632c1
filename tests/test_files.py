"""Uploads: each kind of file read into passages off the event loop, with its progress in
every tab of its owner; a file that cannot be read says why and holds nothing up; refusals
say why; the bytes live in Django's storage and go with what they belong to."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client

from conversations.files import processing
from conversations.models import Conversation, File, Project, SiteSettings
from tests import documents

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


async def signed_in(user):
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def upload(client, name, data, **fields):
    return await client.post("/files/", {"file": SimpleUploadedFile(name, data), **fields})


async def uploaded(user, name, data):
    """`name` uploaded by `user` and made ready (or failed): the stored file."""
    response = await upload(await signed_in(user), name, data)
    assert response.status_code == 201, response.content
    return await processing.ready(response.json()["id"])


@database_sync_to_async
def text_of(file):
    return file.text()


KINDS = [
    ("report.pdf", documents.pdf(["Quarterly revenue rose by nine percent."]), "pdf",
     "Quarterly revenue rose by nine percent."),
    ("notes.docx", documents.word(["Ship the beta on Friday."], [["owner", "task"],
                                                                  ["Ana", "release"]]),
     "docx", "Ship the beta on Friday."),
    ("README.md", b"# Setup\n\nRun `make run`.\n", "markdown", "Run `make run`."),
    ("log.txt", "第一行：服务已启动。\n".encode("gb18030"), "text", "服务已启动"),
    ("sales.csv", b"region,amount\nnorth,120\nsouth,80\n", "csv", "south,80"),
    ("page.html", b"<html><head><style>p{}</style></head><body><h1>Hello</h1>"
                  b"<script>alert('x')</script><p>Visible &amp; kept.</p></body></html>",
     "html", "Visible & kept."),
    ("tool.py", b"def answer():\n    return 42\n", "code", "return 42"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "kind", "expected"), KINDS, ids=[k[2] for k in KINDS])
async def test_it_reads_each_kind_of_file(alice, name, data, kind, expected):
    file = await uploaded(alice, name, data)
    assert (file.status, file.kind, file.progress) == ("ready", kind, 100)
    text = await text_of(file)
    assert expected in text
    assert file.tokens > 0
    if kind == "html":
        assert "alert" not in text and "p{}" not in text
        assert text.index("Hello") < text.index("Visible")
    if kind == "docx":
        assert "## Meeting notes" in text and "Ana | release" in text


async def test_a_large_pdf_made_by_the_test_is_read_page_by_page_with_progress(alice, sockets):
    tab = await sockets(alice)
    other_tab = await sockets(alice)
    response = await upload(await signed_in(alice), "report.pdf", documents.long_report(100))
    assert response.status_code == 201
    assert response.json()["status"] == "processing"
    file = await processing.ready(response.json()["id"])

    assert (file.status, file.pages) == ("ready", 100)
    passages = await database_sync_to_async(list)(file.passages.order_by("ordinal"))
    assert {p.page for p in passages} == set(range(1, 101))
    (fact,) = [p for p in passages if documents.PAGE_80_FACT in p.text]
    assert fact.page == 80
    assert all(len(p.text) <= 1800 for p in passages)
    # Every tab of its owner saw it move, batch by batch, to ready.
    for socket in (tab, other_tab):
        seen = []
        while not seen or seen[-1]["status"] == "processing":
            event = await socket.receive(timeout=30)
            if event["type"] == "file.updated":
                seen.append(event["file"])
        progress = [f["progress"] for f in seen]
        assert progress == sorted(progress) and len(set(progress)) >= 5
        assert seen[-1]["status"] == "ready" and seen[-1]["pages"] == 100


async def test_a_file_that_cannot_be_read_says_why_and_holds_nothing_up(alice, model, sockets):
    client = await signed_in(alice)
    broken = await upload(client, "broken.pdf", b"%PDF-1.7\nthis is no PDF at all")
    good = await upload(client, "fine.txt", b"All is well.")
    scanned = await upload(client, "scan.pdf", documents.pdf([""]))
    assert {broken.status_code, good.status_code, scanned.status_code} == {201}

    broken = await processing.ready(broken.json()["id"])
    assert broken.status == "failed"
    assert broken.error.startswith("This PDF could not be read")
    assert (await processing.ready(good.json()["id"])).status == "ready"
    scanned = await processing.ready(scanned.json()["id"])
    assert scanned.status == "failed" and "No text was found" in scanned.error
    # Its state, as GET answers it, says why.
    answer = await client.get(f"/files/{broken.id}/")
    assert answer.json()["error"].startswith("This PDF could not be read")
    # And the chat goes on.
    tab = await sockets(alice)
    await tab.send(type="send", conversation=None, content="Still there?", parent=None,
                   params={}, client_id=None)  # fmt: skip
    done = await tab.receive_until("message.done")
    assert done[-1]["message"]["status"] == "complete"


@pytest.mark.parametrize(
    ("name", "data", "code", "reason"),
    [
        ("big.txt", b"x" * (1024 * 1024 + 1), "too_large", "larger than 1 MB"),
        ("tool.exe", b"MZ\x90\x00", "unsupported", "not a kind of file Confab reads"),
        ("fake.pdf", b"not a pdf", "unsupported", "not a kind of file Confab reads"),
        ("empty.txt", b"", "invalid", "The file is empty."),
    ],
)
async def test_a_refused_upload_says_why(alice, name, data, code, reason):
    await database_sync_to_async(SiteSettings.objects.update_or_create)(
        pk=1, defaults={"file_max_mb": 1}
    )
    response = await upload(await signed_in(alice), name, data)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert reason in response.json()["error"]
    assert not await database_sync_to_async(File.objects.exists)()


async def test_an_upload_without_a_file_says_which_field(alice):
    response = await (await signed_in(alice)).post("/files/", {"name": "x"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("file: Choose a file")


async def test_get_answers_the_upload_json_and_only_to_its_owner(alice, charlie):
    client = await signed_in(alice)
    created = (await upload(client, "a.md", b"# A\n")).json()
    assert set(created) >= {"id", "name", "size", "status"}
    assert (created["name"], created["size"]) == ("a.md", 4)
    await processing.ready(created["id"])
    shown = (await client.get(f"/files/{created['id']}/")).json()
    assert {k: shown[k] for k in ("id", "name", "size")} == {
        k: created[k] for k in ("id", "name", "size")
    }
    assert shown["status"] == "ready"

    outsider = await signed_in(charlie)
    assert (await outsider.get(f"/files/{created['id']}/")).status_code == 404
    assert (await outsider.post(f"/files/{created['id']}/delete/")).status_code == 404
    assert (await client.post(f"/files/{created['id']}/delete/")).status_code == 200


def test_an_upload_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/files/", {"file": SimpleUploadedFile("a.txt", b"hi")})
    assert response.status_code == 403


def test_an_upload_needs_a_signed_in_user(db):
    response = Client().post("/files/", {"file": SimpleUploadedFile("a.txt", b"hi")})
    assert response.status_code == 401


async def test_the_bytes_are_kept_in_storage_and_go_with_their_conversation(alice, model):
    file = await uploaded(alice, "a.txt", b"kept")
    assert default_storage.exists(file.blob.name)
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=alice)
    await database_sync_to_async(File.objects.filter(id=file.id).update)(conversation=conversation)
    await database_sync_to_async(conversation.delete)()
    assert not await database_sync_to_async(File.objects.filter(id=file.id).exists)()
    assert not default_storage.exists(file.blob.name)


async def test_a_project_file_goes_with_its_project(alice):
    project = await database_sync_to_async(Project.objects.create)(owner=alice, name="Docs")
    client = await signed_in(alice)
    response = await upload(client, "a.txt", b"project text", project=str(project.id))
    file = await processing.ready(response.json()["id"])
    assert file.project_id == project.id
    await database_sync_to_async(project.delete)()
    assert not default_storage.exists(file.blob.name)


async def test_a_project_the_user_may_not_change_takes_no_upload(alice, charlie):
    project = await database_sync_to_async(Project.objects.create)(owner=alice, name="Docs")
    response = await upload(await signed_in(charlie), "a.txt", b"x", project=str(project.id))
    assert response.status_code == 400
    assert response.json()["code"] == "not_found"


async def test_a_file_left_processing_by_a_process_that_ended_is_taken_over(alice, settings):
    file = await uploaded(alice, "a.txt", b"resumed text")
    settings.CONFAB_STALE_AFTER_S = 0
    await database_sync_to_async(File.objects.filter(id=file.id).update)(
        status="processing", progress=40
    )
    await asyncio.sleep(0.01)
    await processing.resume_stalled()
    file = await processing.ready(file.id)
    assert (file.status, await text_of(file)) == ("ready", "resumed text")
