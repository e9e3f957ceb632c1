"""What each message offers: the request a reply was sent with, and deleting messages."""

import json
import uuid
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Conversation, Message, UsageRecord
from tests.helpers import API_KEY, send_event


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
async def test_view_request_shows_exactly_the_body_the_upstream_received(
    alice, model, sockets, fake_upstream
):
    model.default_params = {"top_p": 0.9}
    await database_sync_to_async(model.save)()
    socket = await sockets(alice)
    await socket.send(**send_event("first question", params={"temperature": 0.3}))
    events = await socket.receive_until("message.done")
    conversation = events[0]["conversation"]["id"]
    await database_sync_to_async(Conversation.objects.filter(id=conversation).update)(
        system_prompt="Answer briefly."
    )
    await socket.send(**send_event("second question", conversation, params={"seed": 7}))
    done = (await socket.receive_until("message.done"))[-1]["message"]

    url = f"/m/{done['id']}/request.json"
    response = await database_sync_to_async(lambda: signed_in(alice).get(url))()

    assert response.status_code == 200
    shown = response.json()
    received = fake_upstream.requests[-1]["body"]
    assert shown["request"] == received
    assert [m["content"] for m in shown["request"]["messages"]] == [
        "Answer briefly.",
        "first question",
        "You said: first question",
        "second question",
    ]
    assert (shown["request"]["seed"], shown["request"]["top_p"]) == (7, 0.9)
    assert shown["usage"]["total_tokens"] == 18
    assert API_KEY not in response.content.decode()


@pytest.fixture
def thread(alice, model):
    """alice's conversation: a question, two versions of its answer, and a follow-up."""
    conversation = Conversation.objects.create(owner=alice, title="Tree", model=model)

    def add(role, content, parent, **fields):
        return Message.objects.create(
            conversation=conversation, role=role, content=content, parent=parent, **fields
        )

    question = add("user", "What is 2 + 2?", None)
    first = add("assistant", "4", question)
    second = add("assistant", "Four.", question)
    follow_up = add("user", "And 3 + 3?", second)
    answer = add("assistant", "6", follow_up)
    UsageRecord.objects.create(
        request_id=uuid.uuid4(), user=alice, conversation=conversation, message=answer,
        model_name="fake-model", status="complete", prompt_tokens=5, total_tokens=6,
    )  # fmt: skip
    conversation.shown = answer
    conversation.save()
    return SimpleNamespace(
        conversation=conversation, question=question, first=first, second=second,
        follow_up=follow_up, answer=answer,
    )  # fmt: skip


@pytest.mark.django_db
def test_deleting_a_message_removes_what_follows_it_and_shows_the_other_version(alice, thread):
    response = signed_in(alice).post(f"/m/{thread.second.id}/delete/", follow=True)

    assert response.status_code == 200
    left = set(thread.conversation.messages.values_list("id", flat=True))
    assert left == {thread.question.id, thread.first.id}
    thread.conversation.refresh_from_db()
    assert thread.conversation.shown_id == thread.first.id
    assert "The message was deleted." in response.content.decode()
    assert UsageRecord.objects.get().total_tokens == 6  # the ledger keeps what was used


@pytest.mark.django_db
def test_deleting_the_only_version_shows_what_came_before(alice, thread):
    signed_in(alice).post(f"/m/{thread.follow_up.id}/delete/")

    thread.conversation.refresh_from_db()
    assert thread.conversation.shown_id == thread.second.id
    assert [m.content for m in thread.conversation.branch()] == ["What is 2 + 2?", "Four."]


@pytest.mark.django_db
def test_it_refuses_to_delete_while_a_reply_below_is_generating(alice, thread):
    Message.objects.filter(id=thread.answer.id).update(status=Message.Status.STREAMING)

    response = signed_in(alice).post(f"/m/{thread.second.id}/delete/", follow=True)

    assert "still being generated" in response.content.decode()
    assert thread.conversation.messages.count() == 5


@pytest.mark.django_db
def test_it_rejects_outsider(charlie, thread):
    Message.objects.filter(id=thread.answer.id).update(request={"model": "fake-model"})
    outsider = signed_in(charlie)

    assert outsider.post(f"/m/{thread.second.id}/delete/").status_code == 404
    assert outsider.get(f"/m/{thread.answer.id}/request.json").status_code == 404
    assert outsider.get(f"/m/{thread.second.id}/delete/").status_code == 405
    assert thread.conversation.messages.count() == 5


@pytest.mark.django_db
def test_every_message_offers_its_actions(alice, thread):
    Message.objects.filter(id=thread.answer.id).update(
        request={"model": "fake-model", "messages": []}
    )

    page = signed_in(alice).get(f"/c/{thread.conversation.id}/").content.decode()

    for message in (thread.question, thread.second, thread.follow_up, thread.answer):
        assert f'data-copy="{message.id}"' in page
        assert f'data-delete="{message.id}"' in page
    assert f'data-edit="{thread.follow_up.id}"' in page
    assert (
        f'data-retry="{thread.answer.id}"' in page
        and f'data-retry-with="{thread.answer.id}"' in page
    )
    assert f'data-request="{thread.answer.id}"' in page
    assert f'data-request="{thread.second.id}"' not in page  # no request kept for it
    source = page.split('<template class="message-source">')[1].split("</template>")[0]
    assert source == "Four."


@pytest.mark.django_db
def test_a_reply_from_before_requests_were_kept_says_so(alice, thread):
    response = signed_in(alice).get(f"/m/{thread.answer.id}/request.json")

    assert response.status_code == 404
    assert json.loads(response.content)["error"] == "This reply's request was not kept."


@pytest.mark.django_db
def test_a_message_far_back_opens_with_the_earlier_messages_shown(alice, model, settings):
    settings.CONFAB_MESSAGES_SHOWN = 10
    conversation = Conversation.objects.create(owner=alice, title="Long", model=model)
    parent, chain = None, []
    for i in range(30):
        role = "user" if i % 2 == 0 else "assistant"
        parent = Message.objects.create(
            conversation=conversation, role=role, content=f"message {i}", parent=parent
        )
        chain.append(parent)
    client = signed_in(alice)

    far_back = client.get(f"/c/{conversation.id}/?show={chain[2].id}").content.decode()
    recent = client.get(f"/c/{conversation.id}/?show={chain[25].id}").content.decode()
    chosen = client.post(f"/m/{chain[2].id}/show/")
    chosen_recent = client.post(f"/m/{chain[25].id}/show/")

    assert f'id="m-{chain[2].id}"' in far_back and f'id="m-{chain[0].id}"' in far_back
    assert f'id="m-{chain[25].id}"' in recent and f'id="m-{chain[19].id}"' not in recent
    assert chosen.url == f"/c/{conversation.id}/?earlier=all#m-{chain[2].id}"
    assert f'id="m-{chain[2].id}"' in client.get(chosen.url).content.decode()
    assert chosen_recent.url == f"/c/{conversation.id}/#m-{chain[25].id}"


@pytest.mark.django_db(transaction=True)
async def test_a_deletion_reaches_every_tab_open_on_the_conversation(alice, thread, sockets):
    tabs = [await sockets(alice), await sockets(alice)]
    for tab in tabs:
        await tab.send(type="subscribe", conversation=str(thread.conversation.id))
    elsewhere = await sockets(alice)  # a tab on another conversation hears nothing

    await database_sync_to_async(lambda: signed_in(alice).post(f"/m/{thread.second.id}/delete/"))()

    deleted = {str(m.id) for m in (thread.second, thread.follow_up, thread.answer)}
    for tab in tabs:
        event = await tab.receive()
        assert set(event.pop("messages")) == deleted
        assert event == {
            "type": "message.deleted",
            "conversation": str(thread.conversation.id),
            "shown": str(thread.first.id),
        }
        assert await tab.nothing_more()
    assert await elsewhere.nothing_more()


@pytest.mark.django_db
def test_the_thread_alone_is_shown_again_and_leaves_the_pages_notice(alice, thread):
    client = signed_in(alice)
    client.post(f"/m/{thread.second.id}/delete/")

    fragment = client.get(f"/c/{thread.conversation.id}/?thread=1").content.decode()
    page = client.get(f"/c/{thread.conversation.id}/").content.decode()

    assert fragment.lstrip().startswith("<article") and "<html" not in fragment
    assert f'id="m-{thread.first.id}"' in fragment and "Four." not in fragment
    assert "The message was deleted." not in fragment
    assert "The message was deleted." in page  # still there for the page that deleted it
