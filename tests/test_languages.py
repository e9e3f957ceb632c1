"""English and Simplified Chinese: chosen from the browser or the switcher, everywhere."""

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.models import Conversation
from tests.helpers import send_event

CATALOGUE = Path(__file__).resolve().parent.parent / "locale" / "zh_Hans" / "LC_MESSAGES"


def po_entries():
    """(msgid, msgstr) pairs of the Chinese catalogue, the header left out."""
    text = (CATALOGUE / "django.po").read_text()
    pattern = re.compile(r'^msgid ((?:".*"\n)+)msgstr ((?:".*"\n)+)', re.MULTILINE)

    def join(block):  # PO strings are C-escaped, as Python string literals are
        return "".join(ast.literal_eval(line) for line in block.splitlines())

    return [(join(i), join(s)) for i, s in pattern.findall(text) if join(i)]


def test_every_string_has_a_chinese_translation_and_is_compiled():
    entries = po_entries()
    with (CATALOGUE / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)

    assert len(entries) > 150
    assert [msgid for msgid, msgstr in entries if not msgstr] == []
    stale = [msgid for msgid, msgstr in entries if compiled.gettext(msgid) != msgstr]
    assert stale == [], "run manage.py compilemessages"


@pytest.mark.django_db
def test_the_browsers_language_chooses_chinese(client, alice, model):
    client.force_login(alice)
    Conversation.objects.create(owner=alice, title="Plans", model=model)
    client.get(reverse("chat"), HTTP_ACCEPT_LANGUAGE="en")  # the sidebar in English first

    page = client.get(reverse("chat"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()

    assert '<html lang="zh-hans">' in page
    assert "新对话" in page and "发送" in page and "给 Confab 发消息" in page
    assert "今天" in page and "Today" not in page  # the sidebar's day headings too


@pytest.mark.django_db
def test_the_switcher_keeps_the_choice(client, alice):
    client.force_login(alice)

    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    chinese = client.get(reverse("chat"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    english = client.get(reverse("chat"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    assert "新对话" in chinese
    assert "New chat" in english and "新对话" not in english


@pytest.mark.django_db(transaction=True)
async def test_a_finished_reply_is_rendered_in_the_senders_language(
    alice, model, fake_upstream, sockets
):
    socket = await sockets(alice, headers=[(b"accept-language", b"zh-CN,zh;q=0.9")])
    await socket.send(**send_event())
    done = (await socket.receive_until("message.done"))[-1]["message"]

    assert "11 + 7 = 18 个 token" in done["html"]


@pytest.mark.django_db(transaction=True)
async def test_websocket_errors_speak_the_pages_language(
    alice, model, fake_upstream, settings, sockets
):
    settings.CONFAB_USER_SENDS_PER_MINUTE = 0
    socket = await sockets(alice, headers=[(b"accept-language", b"zh-CN,zh;q=0.9")])
    await socket.send_raw(text_data="{not json")
    bad_json = await socket.receive()
    await socket.send(**send_event(params={"temperature": 5}))
    out_of_range = await socket.receive()
    await socket.send(**send_event())
    rate_limited = await socket.receive()

    assert bad_json["message"] == "该帧不是有效的 JSON。"
    assert out_of_range["message"] == "params.temperature: 必须介于 0 和 2 之间。"
    assert rate_limited["code"] == "rate_limited"
    assert rate_limited["message"].startswith("你本分钟已发送 0 条消息")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "said"),
    [("en", "6,000 + 2,301 = 8,301 tokens"), ("zh-CN", "6,000 + 2,301 = 8,301 个 token")],
)
def test_numbers_with_units_follow_the_language(client, alice, model, language, said):
    from conversations.models import Message

    conversation = Conversation.objects.create(owner=alice, title="Counts", model=model)
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Hello",
        prompt_tokens=6000, completion_tokens=2301, total_tokens=8301,
    )  # fmt: skip
    client.force_login(alice)

    page = client.get(
        reverse("conversation", args=[conversation.id]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()

    assert said in page
