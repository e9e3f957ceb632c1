"""Pages and exports: sign-up, the chat page, owner-only exports, the admin's provider form."""

import json
import logging
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message, Provider, SiteSettings
from tests.helpers import API_KEY

pytestmark = pytest.mark.django_db


def signup(client, username):
    return client.post(
        reverse("signup"),
        {"username": username, "password1": "correct horse 42", "password2": "correct horse 42"},
    )


def conversation_with_reply(owner, model=None, title="Talk"):
    conversation = Conversation.objects.create(owner=owner, title=title, model=model)
    question = Message.objects.create(
        conversation=conversation, role="user", content="What is **2 + 2**?"
    )
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="It is **4**.\n\n<script>alert(1)</script>",
        model_name="fake-model",
        prompt_tokens=12,
        completion_tokens=5,
        total_tokens=17,
        usage_estimated=True,
        duration_ms=1530,
    )
    return conversation


def test_the_first_account_becomes_the_administrator(client):
    response = signup(client, "alice")

    assert response.status_code == 302
    alice = get_user_model().objects.get(username="alice")
    assert alice.is_superuser and alice.is_staff
    page = client.get(reverse("chat"))
    assert "Welcome! You are the administrator of this Confab." in page.content.decode()


def test_the_first_visit_lands_on_creating_the_administrator_account(client):
    response = client.get(reverse("chat"), follow=True)

    assert response.redirect_chain[-1][0] == reverse("signup")
    page = response.content.decode()
    assert "<h2>Create the administrator account</h2>" in page
    assert "I already have an account" not in page


def test_once_there_is_an_account_signing_in_is_signing_in(client, alice):
    response = client.get(reverse("chat"), follow=True)

    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert "<h2>Sign in</h2>" in response.content.decode()


def test_later_sign_ups_follow_the_administrators_setting(client, alice):
    assert client.get(reverse("signup")).status_code == 403
    assert signup(client, "bob").status_code == 403
    assert not get_user_model().objects.filter(username="bob").exists()

    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_open": True})
    assert signup(client, "bob").status_code == 302
    bob = get_user_model().objects.get(username="bob")
    assert not bob.is_staff and not bob.is_superuser


def test_every_page_has_an_icon_and_browsers_asking_for_favicon_ico_find_it(client):
    page = client.get(reverse("login"), follow=True).content.decode()
    (icon,) = re.findall(r'<link rel="icon" href="([^"]+)"', page)

    response = client.get("/favicon.ico")

    assert (response.status_code, response["Location"]) == (301, icon)
    path = finders.find(icon.removeprefix(settings.STATIC_URL))
    assert path and Path(path).read_text().lstrip().startswith("<svg")


def test_it_asks_to_sign_in_first(client):
    response = client.get(reverse("chat"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_the_chat_page_shows_the_conversation_rendered_safely(client, alice, model):
    conversation = conversation_with_reply(alice, model)
    client.force_login(alice)

    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()

    assert "What is **2 + 2**?" in page  # the user's own text, as typed
    assert "It is <strong>4</strong>." in page
    assert "<script>alert(1)</script>" not in page
    assert "≈ 12 + 5 = 17 tokens (estimated)" in page
    assert "1.5 s" in page
    assert str(model.public_id) in page  # in the model picker


def test_the_sidebar_lists_only_my_conversations_newest_first_by_page(client, alice, bob, settings):
    settings.CONFAB_CONVERSATIONS_PER_PAGE = 2
    for i in range(3):
        Conversation.objects.create(owner=alice, title=f"alice {i}")
    Conversation.objects.create(owner=bob, title="bob's")
    client.force_login(alice)

    first = client.get(reverse("chat"))
    second = client.get(reverse("chat") + "?page=2")

    assert [c.title for c in first.context["sidebar"]] == ["alice 2", "alice 1"]
    assert [c.title for c in second.context["sidebar"]] == ["alice 0"]
    assert "bob&#x27;s" not in first.content.decode()


def test_it_rejects_outsider(client, alice, charlie):
    conversation = conversation_with_reply(alice)
    client.force_login(charlie)

    for name in ["conversation", "export_json", "export_markdown"]:
        assert client.get(reverse(name, args=[conversation.id])).status_code == 404


def test_the_json_export_follows_the_contract(client, alice, model):
    conversation = conversation_with_reply(alice, model)
    client.force_login(alice)

    response = client.get(reverse("export_json", args=[conversation.id]))

    assert response["Content-Disposition"] == 'attachment; filename="talk.json"'
    data = json.loads(response.content)
    assert set(data["conversation"]) >= {
        "id", "title", "created", "model", "system_prompt", "params",
    }  # fmt: skip
    assert data["conversation"]["model"] == "fake-model"
    question, answer = data["messages"]
    assert set(answer) >= {
        "id", "parent", "role", "content", "reasoning", "tool_calls", "status",
        "finish_reason", "error", "model", "params", "usage", "cost", "created",
        "completed", "ttft_ms", "duration_ms",
    }  # fmt: skip
    assert answer["parent"] == question["id"]
    assert answer["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "estimated": True,
    }


def test_the_markdown_export_reads_as_the_conversation(client, alice):
    conversation = conversation_with_reply(alice)
    client.force_login(alice)

    text = client.get(reverse("export_markdown", args=[conversation.id])).content.decode()

    assert text.startswith("# Talk\n")
    assert "## User\n\nWhat is **2 + 2**?" in text
    assert "## Assistant (fake-model)\n\nIt is **4**." in text


def test_the_api_key_is_write_only_in_admin(client, alice, provider, caplog):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    change = reverse("admin:conversations_provider_change", args=[provider.pk])

    with caplog.at_level(logging.DEBUG):
        pages = [
            client.get(change).content.decode(),
            client.get(reverse("admin:conversations_provider_changelist")).content.decode(),
        ]
        client.post(change, {"name": "Fake", "base_url": provider.base_url, "enabled": "on"})

    for page in pages:
        assert API_KEY not in page
        assert "…4f2a" in page
    assert API_KEY not in caplog.text
    provider.refresh_from_db()
    assert provider.api_key == API_KEY  # an empty field keeps the key


def test_the_api_key_is_encrypted_at_rest(provider):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM conversations_provider WHERE id = %s", [provider.pk])
        [stored] = cursor.fetchone()

    assert API_KEY not in stored
    assert Provider.objects.get(pk=provider.pk).api_key == API_KEY


def test_a_rotated_secret_key_still_reads_stored_provider_keys(provider, settings):
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a brand new secret key for this server"

    assert Provider.objects.get(pk=provider.pk).api_key == API_KEY


def test_the_sidebar_groups_conversations_by_day(client, alice):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for title, age in [("fresh", 0), ("late", 1), ("this week", 3), ("ancient", 40)]:
        Conversation.objects.create(owner=alice, title=title, updated=now - timedelta(days=age))
    client.force_login(alice)

    page = client.get(reverse("chat")).content.decode()
    headings = re.findall(r'<li class="day" data-day="(\w+)"', page)

    assert headings == ["today", "yesterday", "week", "older"]
    assert page.index("Today") < page.index("fresh") < page.index("Yesterday") < page.index("late")
    assert page.index("Previous 7 days") < page.index("this week") < page.index("Earlier")


def test_the_chat_page_costs_the_same_queries_however_many_conversations(client, alice):
    def queries_for_page():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("chat")).status_code == 200
        return len(queries)

    client.force_login(alice)
    Conversation.objects.create(owner=alice, title="one")
    few = queries_for_page()
    Conversation.objects.bulk_create(Conversation(owner=alice, title=f"c{i}") for i in range(80))

    assert queries_for_page() == few


def two_answers(owner):
    """A conversation whose question has two answers; the newest is on show."""
    conversation = Conversation.objects.create(owner=owner, title="Versions")
    question = Message.objects.create(conversation=conversation, role="user", content="Q")
    first = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="First answer"
    )
    second = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Second answer"
    )
    return conversation, first, second


def test_the_version_switcher_posts_the_choice_and_it_is_remembered(client, alice):
    conversation, first, second = two_answers(alice)
    client.force_login(alice)
    url = reverse("conversation", args=[conversation.id])

    newest = client.get(url).content.decode()
    switched = client.post(reverse("show_branch", args=[first.id]))
    remembered = client.get(url).content.decode()

    assert "Second answer" in newest and "First answer" not in newest
    assert "<span>2 / 2</span>" in newest
    assert f'formaction="/m/{first.id}/show/"' in newest
    assert switched.status_code == 302 and switched.url == f"{url}#m-{first.id}"
    assert "First answer" in remembered and "Second answer" not in remembered
    assert "<span>1 / 2</span>" in remembered
    assert f'formaction="/m/{second.id}/show/"' in remembered
    assert 'id="show-branch-form"' in remembered  # what the switcher's buttons submit


def test_it_shows_a_branch_asked_for_with_get_but_remembers_nothing(client, alice):
    conversation, first, _ = two_answers(alice)
    client.force_login(alice)
    url = reverse("conversation", args=[conversation.id])

    shown = client.get(url, {"show": str(first.id)})

    assert shown.status_code == 200
    assert "First answer" in shown.content.decode()
    assert "Second answer" not in shown.content.decode()
    assert shown.context["page_data"]["parent"] == str(first.id)  # a send continues it
    conversation.refresh_from_db()
    assert conversation.shown is None
    assert "Second answer" in client.get(url).content.decode()
    assert client.get(reverse("show_branch", args=[first.id])).status_code == 405


def test_it_refuses_a_branch_choice_from_another_site(alice):
    conversation, first, _ = two_answers(alice)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    forged = client.post(
        reverse("show_branch", args=[first.id]), HTTP_ORIGIN="https://evil.example"
    )

    assert forged.status_code == 403
    conversation.refresh_from_db()
    assert conversation.shown is None


def test_the_switcher_ignores_other_conversations_messages(client, alice, bob):
    mine = Conversation.objects.create(owner=alice)
    theirs = Conversation.objects.create(owner=bob)
    foreign = Message.objects.create(conversation=theirs, role="user", content="secret")
    client.force_login(alice)

    shown = client.get(reverse("conversation", args=[mine.id]), {"show": str(foreign.id)})
    client.get(reverse("conversation", args=[mine.id]), {"show": "not-a-uuid"})
    chosen = client.post(reverse("show_branch", args=[foreign.id]))

    assert "secret" not in shown.content.decode()
    assert chosen.status_code == 404
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.shown is None and theirs.shown is None


def test_rename_pin_and_archive_a_conversation(client, alice):
    older = Conversation.objects.create(owner=alice, title="older")
    Conversation.objects.create(owner=alice, title="newer")
    client.force_login(alice)

    client.post(reverse("rename", args=[older.id]), {"title": "  Renamed   title "})
    client.post(reverse("pin", args=[older.id]))
    page = client.get(reverse("chat"))

    older.refresh_from_db()
    assert (older.title, older.pinned) == ("Renamed title", True)
    assert [c.title for c in page.context["sidebar"]] == ["Renamed title", "newer"]
    assert 'data-day="pinned"' in page.content.decode()

    client.post(reverse("archive", args=[older.id]))
    assert [c.title for c in client.get(reverse("chat")).context["sidebar"]] == ["newer"]
    archived = client.get(reverse("chat"), {"archived": "1"}).context["sidebar"]
    assert [c.title for c in archived] == ["Renamed title"]


def test_a_deleted_conversation_can_be_undone_then_is_purged(client, alice, settings):
    from conversations.generation.reaper import purge_deleted

    conversation = conversation_with_reply(alice)
    client.force_login(alice)

    after_delete = client.post(reverse("delete", args=[conversation.id]), follow=True)
    page = after_delete.content.decode()
    assert "was deleted." in page and "Undo delete" in page
    assert client.get(reverse("conversation", args=[conversation.id])).status_code == 404

    client.post(reverse("restore", args=[conversation.id]))
    assert client.get(reverse("conversation", args=[conversation.id])).status_code == 200

    client.post(reverse("delete", args=[conversation.id]))
    settings.CONFAB_UNDO_DELETE_S = 0
    assert purge_deleted() == 3  # the conversation and its two messages
    assert not Conversation.objects.filter(id=conversation.id).exists()


def test_conversation_actions_reject_outsider(client, alice, charlie):
    conversation = Conversation.objects.create(owner=alice, title="mine")
    client.force_login(charlie)

    for name in ["rename", "pin", "archive", "delete", "restore"]:
        assert client.post(reverse(name, args=[conversation.id]), {"title": "x"}).status_code == 404
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned, conversation.deleted) == ("mine", False, None)


def test_conversation_actions_need_post(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)

    assert client.get(reverse("delete", args=[conversation.id])).status_code == 405


def test_search_finds_my_titles_and_messages_and_links_to_the_message(client, alice, bob):
    mine = conversation_with_reply(alice, title="Arithmetic")
    answer = mine.messages.get(role="assistant")
    Message.objects.create(conversation=mine, role="user", content="我想学习数据库索引")
    theirs = Conversation.objects.create(owner=bob, title="Arithmetic secrets")
    Message.objects.create(conversation=theirs, role="user", content="It is 4, bob's answer")
    client.force_login(alice)

    by_title = client.get(reverse("search"), {"q": "arithmetic"}).content.decode()
    by_text = client.get(reverse("search"), {"q": "It is"}).content.decode()
    in_chinese = client.get(reverse("search"), {"q": "数据库"}).content.decode()
    hostile = client.get(reverse("search"), {"q": "<script>"}).content.decode()
    nothing = client.get(reverse("search"), {"q": "zebra"}).content.decode()

    assert "Arithmetic" in by_title and "secrets" not in by_title
    assert f"?show={answer.id}#m-{answer.id}" in by_text
    assert "<mark>It is</mark> **4**." in by_text and "bob" not in by_text
    assert "我想学习<mark>数据库</mark>索引" in in_chinese
    assert "<script>alert" not in hostile and "&lt;script&gt;" in hostile
    assert "Nothing matches “zebra”." in nothing


def test_a_reply_shows_its_cached_and_reasoning_tokens_cost_and_first_token_time(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    question = Message.objects.create(conversation=conversation, role="user", content="Q")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="A",
        prompt_tokens=50, completion_tokens=20, total_tokens=70, cached_tokens=32,
        reasoning_tokens=12, cost="0.00120000", ttft_ms=240, duration_ms=900,
    )  # fmt: skip
    client.force_login(alice)

    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()

    assert "50 + 20 = 70 tokens" in page and "32 cached" in page and "12 reasoning" in page
    assert ">USD 0.0012<" in page and "first token 240 ms" in page


def test_a_long_conversation_shows_its_last_messages_first(client, alice, settings):
    settings.CONFAB_MESSAGES_SHOWN = 4
    conversation = Conversation.objects.create(owner=alice)
    parent = None
    for i in range(10):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant",
            content=f"message number {i}",
        )  # fmt: skip
    client.force_login(alice)
    url = reverse("conversation", args=[conversation.id])

    recent = client.get(url).content.decode()
    everything = client.get(url, {"earlier": "all"}).content.decode()

    assert "message number 9" in recent and "message number 6" in recent
    assert "message number 5" not in recent and "Show 6 earlier messages" in recent
    assert all(f"message number {i}" in everything for i in range(10))
    assert "earlier message" not in everything


def test_a_reply_is_headed_by_its_models_display_name(client, alice, model):
    conversation = conversation_with_reply(alice, model=model)
    conversation.messages.filter(role="assistant").update(model=model)
    client.force_login(alice)

    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()
    exported = client.get(reverse("export_json", args=[conversation.id])).json()

    assert '<div class="message-role">Fake model' in page
    assert '<div class="message-role">fake-model' not in page
    reply = exported["messages"][-1]
    assert (reply["model"], reply["model_label"]) == ("fake-model", "Fake model")


def test_a_reply_of_the_bundled_model_says_what_it_is(client, alice, model):
    Provider.objects.filter(pk=model.provider_id).update(bundled=True)
    conversation = conversation_with_reply(alice, model=model)
    conversation.messages.filter(role="assistant").update(model=model)
    client.force_login(alice)

    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()

    assert '<span class="demo">a small local demo model, English only</span>' in page
    assert "Connect a real provider" not in page  # that link is for administrators
