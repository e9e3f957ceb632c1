"""Answers grounded in files: whole when they fit, else retrieval (the file tools as steps
for a model with tools, the best passages in the prompt for one without), Chinese text found
on both databases, citations shown live, after a reload and in the exports, the file
context reserved under quotas, and at most the site's number of files a message."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.files import search
from conversations.models import File, LanguageModel, Message, Quota, SiteSettings
from tests import documents
from tests.fake_upstream import agent, calls, reply
from tests.helpers import send_event, upload_file

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"region,amount\nnorth,120\nsouth,80\neast,95\nwest,101\n"
# A Chinese document too long to send whole; the answer is in one paragraph of it.
ANSWER_ZH = "公司年会定于十二月十八日在杭州西湖国宾馆举行，全体员工都要参加。"
TOPICS_ZH = [
    "本季度销售额比去年同期增长了百分之九，主要来自华东地区的新客户。",
    "新版移动应用将在下个月上线，产品团队正在修复最后一批问题。",
    "办公室的空调系统将在周末检修，请大家提前带走个人物品。",
    "人力资源部提醒大家按时提交考勤记录，逾期将影响绩效评估。",
    "技术部计划引入新的代码审查流程，以提高软件质量和安全性。",
    "财务部门完成了上半年的审计工作，未发现重大问题。",
]


def chinese_document():
    paragraphs = [topic * 10 for topic in TOPICS_ZH * 2]
    paragraphs.insert(7, ANSWER_ZH * 2)
    return "\n\n".join(paragraphs).encode()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def scripted(provider, fake_upstream):
    """A model of its own, answering with `steps` (or a script of turns)."""

    def make(name, steps, **fields):
        fake_upstream.script(name, steps)
        return LanguageModel.objects.create(provider=provider, upstream_id=name, **fields)

    return make


async def ask(socket, model, text, files=(), conversation=None):
    event = send_event(text, conversation=conversation, model=str(model.public_id))
    if files:
        event["files"] = [str(f.id) for f in files]
    await socket.send(**event)


async def until_answer(socket, timeout=30):
    events = []
    while True:
        events.append(event := await socket.receive(timeout=timeout))
        if event["type"] == "error":
            return events
        if event["type"] == "message.done" and event["message"]["role"] == "assistant":
            if not event["message"]["tool_calls"]:
                return events


def system_texts(body):
    return [m["content"] for m in body["messages"] if m["role"] == "system"]


async def test_a_file_that_fits_is_sent_whole(alice, scripted, sockets, fake_upstream):
    model = await database_sync_to_async(scripted)("whole", reply(["Four regions."]))
    sales = await upload_file(alice, "sales.csv", CSV)
    tab = await sockets(alice)
    await ask(tab, model, "Summarise this CSV.", [sales])
    events = await until_answer(tab)

    body = fake_upstream.requests[0]["body"]
    (files,) = system_texts(body)
    assert '<file name="sales.csv">' in files and CSV.decode() in files
    assert "search_files" not in json.dumps(body.get("tools", []))
    created = [e["message"] for e in events if e["type"] == "message.created"]
    assert created[0]["files"] == [
        {"id": str(sales.id), "name": "sales.csv", "size": len(CSV), "kind": "csv"}
    ]
    assert events[-1]["message"]["citations"] == []
    # The next turn still reads it: it belongs to the conversation now.
    await ask(tab, model, "And the largest?", conversation=created[0]["conversation"])
    await until_answer(tab)
    assert CSV.decode() in system_texts(fake_upstream.requests[1]["body"])[0]
    # "View request" shows the files' text as it was sent, though the reply stores its id.
    reply_id = events[-1]["message"]["id"]
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    shown = (await database_sync_to_async(client.get)(f"/m/{reply_id}/request.json")).json()
    assert shown["request"]["messages"] == body["messages"]
    stored = await database_sync_to_async(Message.objects.get)(id=reply_id)
    assert CSV.decode() not in json.dumps(stored.request)


async def test_a_long_file_is_searched_with_tools_and_the_answer_cites_page_80(
    alice, scripted, sockets, fake_upstream
):
    model = await database_sync_to_async(scripted)(
        "reader",
        agent(
            calls(("search_files", {"query": "lighthouse keeper ledger storms"})),
            reply(["The keeper's ledger records 4,212 storms [1]."]),
        ),
        context_window=4000,
        max_output_tokens=200,
    )
    report = await upload_file(alice, "report.pdf", documents.long_report(100))
    tab = await sockets(alice)
    await ask(tab, model, "How many storms does the ledger record?", [report])
    events = await until_answer(tab)

    first = fake_upstream.requests[0]["body"]
    offered = [t["function"]["name"] for t in first["tools"]]
    assert offered == ["search_files", "read_passage"]
    assert "too long to give you whole" in system_texts(first)[0]
    assert documents.PAGE_80_FACT not in json.dumps(first)
    # The search ran as a step like any tool, and its result went back to the model.
    tool = next(e["message"] for e in events if e["type"] == "message.done"
                and e["message"]["role"] == "tool")  # fmt: skip
    assert tool["name"] == "search_files" and not tool["tool_error"]
    assert tool["content"].startswith("[report.pdf #") and ", page 80]" in tool["content"]
    assert documents.PAGE_80_FACT in fake_upstream.requests[1]["body"]["messages"][-1]["content"]

    # The answer cites the passage: live, from its creation on, and in its final HTML.
    answer_created = [e["message"] for e in events if e["type"] == "message.created"
                      and e["message"]["role"] == "assistant"][-1]  # fmt: skip
    cited = answer_created["citations"][0]
    assert (cited["n"], cited["name"], cited["page"]) == (1, "report.pdf", 80)
    assert documents.PAGE_80_FACT in cited["text"]
    done = events[-1]["message"]
    assert done["citations"] == answer_created["citations"]
    assert "[1] report.pdf, page 80" in done["html"]
    assert documents.PAGE_80_FACT.replace("'", "&#x27;") in done["html"]

    # After a reload, and in both exports.
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    conversation = done["conversation"]
    page = (await database_sync_to_async(client.get)(f"/c/{conversation}/")).content.decode()
    assert "[1] report.pdf, page 80" in page
    exported = (await database_sync_to_async(client.get)(f"/c/{conversation}/export.json")).json()
    answer = next(m for m in exported["messages"] if m["id"] == done["id"])
    assert answer["citations"][0]["page"] == 80
    markdown = (await database_sync_to_async(client.get)(f"/c/{conversation}/export.md")).content
    assert "[1] report.pdf, page 80" in markdown.decode()
    assert f"> {documents.PAGE_80_FACT}" in markdown.decode()


async def test_a_model_without_tools_gets_the_best_passages_and_cites_them(
    alice, scripted, sockets, fake_upstream
):
    model = await database_sync_to_async(scripted)(
        "plain",
        reply(["4,212 storms [1]."]),
        supports_tools=False,
        context_window=4000,
        max_output_tokens=200,
    )
    report = await upload_file(alice, "report.pdf", documents.long_report(100))
    tab = await sockets(alice)
    await ask(tab, model, "How many storms does the lighthouse keeper's ledger record?", [report])
    events = await until_answer(tab)

    body = fake_upstream.requests[0]["body"]
    assert "tools" not in body
    (passages,) = system_texts(body)
    assert passages.startswith("Passages from the files the user shared")
    assert "[1] report.pdf, page 80:" in passages and documents.PAGE_80_FACT in passages
    done = events[-1]["message"]
    assert done["citations"][0]["page"] == 80
    assert len(done["citations"]) <= 6


@pytest.mark.parametrize("question", ["年会在哪里举行？", "Where is the 年会 held?"])
async def test_chinese_text_is_found(alice, scripted, sockets, fake_upstream, question):
    model = await database_sync_to_async(scripted)(
        "zh", reply(["杭州。"]), supports_tools=False, context_window=3000, max_output_tokens=200
    )
    notes = await upload_file(alice, "通知.md", chinese_document())
    assert notes.tokens > 3000  # too long to send whole
    tab = await sockets(alice)
    await ask(tab, model, question, [notes])
    events = await until_answer(tab)
    (passages,) = system_texts(fake_upstream.requests[0]["body"])
    assert "[1] 通知.md:" in passages
    first = passages.split("[2]")[0]
    assert ANSWER_ZH in first
    assert ANSWER_ZH in events[-1]["message"]["citations"][0]["text"]


async def test_search_finds_chinese_words_in_the_database(alice):
    notes = await upload_file(alice, "通知.md", chinese_document())
    found = await database_sync_to_async(search.search)([notes.id], "杭州西湖", 3)
    assert ANSWER_ZH in found[0].text
    assert search.terms("年会在哪里") == ["年会", "会在", "在哪", "哪里"]
    assert search.terms("The keeper's LEDGER of storms") == ["keeper", "ledger", "storms"]


async def test_the_file_context_is_reserved_under_the_quota(alice, scripted, sockets):
    model = await database_sync_to_async(scripted)(
        "quota", reply(["ok"]), context_window=100_000, max_output_tokens=100
    )
    await database_sync_to_async(Quota.objects.create)(user=alice, max_tokens=1500)
    text = ("The harbour report, section after section. " * 200).encode()
    big = await upload_file(alice, "big.txt", text)
    assert big.tokens > 1500
    tab = await sockets(alice)
    await ask(tab, model, "Summarise it.", [big])
    (refusal,) = await tab.receive_until("error")
    assert refusal["code"] == "quota_exceeded"
    assert not await database_sync_to_async(File.objects.filter(conversation=None).exclude(
        id=big.id).exists)()  # fmt: skip
    # Without the file, the same question fits the quota; the reply's prompt estimate, what
    # was reserved, is small.
    await ask(tab, model, "Summarise it.")
    events = await until_answer(tab)
    created = next(e["message"] for e in events if e["type"] == "message.created"
                   and e["message"]["role"] == "assistant")  # fmt: skip
    assert created["usage"]["prompt_tokens"] < 100


async def test_a_send_refuses_files_it_cannot_take(alice, charlie, model, sockets):
    theirs = await upload_file(charlie, "theirs.txt", b"not alice's")
    broken = await upload_file(alice, "broken.pdf", b"%PDF-1.4 broken")
    reading = await database_sync_to_async(File.objects.create)(
        owner=alice, name="slow.pdf", kind="pdf", size=1, blob="files/slow.pdf"
    )
    tab = await sockets(alice)
    for file, code, words in [
        (theirs, "not_found", "files: no such file."),
        (broken, "invalid", "broken.pdf could not be read: This PDF could not be read"),
        (reading, "file_not_ready", "slow.pdf is still being read."),
    ]:
        await tab.send(**send_event("Read this.", files=[str(file.id)]))
        (error,) = await tab.receive_until("error")
        assert error["code"] == code and error["message"].startswith(words), error
    await tab.send(**send_event("Read these.", files=["not-a-uuid"]))
    (error,) = await tab.receive_until("error")
    assert error["code"] == "invalid"
    assert not await database_sync_to_async(Message.objects.exists)()


async def test_a_send_over_the_files_per_message_cap_is_refused_naming_the_cap(
    alice, model, sockets, fake_upstream
):
    await database_sync_to_async(SiteSettings.objects.update_or_create)(
        pk=1, defaults={"files_per_message": 2}
    )
    notes = [await upload_file(alice, f"note{i}.txt", f"Note number {i}.".encode())
             for i in range(3)]  # fmt: skip
    tab = await sockets(alice)

    await tab.send(**send_event("Read these.", files=[str(f.id) for f in notes]))
    (error,) = await tab.receive_until("error")
    assert (error["code"], error["message"]) == ("invalid", "files: at most 2 files per message.")
    assert not await database_sync_to_async(Message.objects.exists)()
    assert fake_upstream.requests == []

    # At the cap, the same send is taken, and both files reach the model.
    await tab.send(**send_event("Read these.", files=[str(f.id) for f in notes[:2]]))
    events = await until_answer(tab)
    assert events[-1]["message"]["status"] == "complete"
    sent = next(e["message"] for e in events if e["type"] == "message.created"
                and e["message"]["role"] == "user")  # fmt: skip
    assert [f["name"] for f in sent["files"]] == ["note0.txt", "note1.txt"]
    (context,) = system_texts(fake_upstream.requests[0]["body"])
    assert "Note number 0." in context and "Note number 1." in context
