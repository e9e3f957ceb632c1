"""Share links: a snapshot of a branch at /s/<token>/, for the people of this Confab or anyone
with the link; revocable by its owner alone, optionally expiring; a reader may continue it
in a conversation of their own, and never reaches the conversation it was taken from."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Message, Share

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "You are the vault of alice-prompt-5521."


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def talk(alice, model):
    """alice's conversation: a question, two versions of its answer (the second on show),
    and a follow-up with its answer."""
    conversation = Conversation.objects.create(
        owner=alice, title="Circles", model=model, system_prompt=SECRET_PROMPT
    )

    def add(role, content, parent, **fields):
        return Message.objects.create(
            conversation=conversation, role=role, content=content, parent=parent, **fields
        )

    question = add("user", "What is the area of a circle?", None)
    first = add("assistant", "Old version.", question, model_name="fake-model")
    second = add(
        "assistant", "It is $\\pi r^2$.", question, model_name="fake-model",
        prompt_tokens=11, completion_tokens=7, total_tokens=18, cost=Decimal("0.00123"),
    )  # fmt: skip
    follow_up = add("user", "And its circumference?", second)
    answer = add(
        "assistant", "It is **2πr**.", follow_up, model_name="fake-model",
        prompt_tokens=30, completion_tokens=9, total_tokens=39, cost=Decimal("0.00456"),
    )  # fmt: skip
    conversation.shown = answer
    conversation.save()
    conversation.first, conversation.answer = first, answer
    return conversation


def share(client, conversation, **choices):
    """alice shares through the page's form; the answer names the link."""
    response = client.post(f"/c/{conversation.id}/share/", {"audience": "members", **choices})
    assert response.status_code == 302
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]+/", response["Location"])
    return response["Location"]


def page_text(response):
    return response.content.decode()


def test_it_shares_a_snapshot_of_the_branch_on_show(talk, alice, bob):
    link = share(signed_in(alice), talk)
    # Later messages, edits and deletions of the conversation never reach the snapshot.
    later = Message.objects.create(
        conversation=talk, role="user", content="A later question", parent=talk.answer
    )
    talk.answer.content = "Edited afterwards."
    talk.answer.save()
    talk.shown = later
    talk.save()

    page = page_text(signed_in(bob).get(link))

    assert "What is the area of a circle?" in page
    assert '<span class="math" data-display="inline">\\pi r^2</span>' in page
    assert "<strong>2πr</strong>" in page
    assert "Old version." not in page  # the other branch
    assert "A later question" not in page and "Edited afterwards." not in page


def test_its_token_is_unguessable(talk, alice):
    tokens = {share(signed_in(alice), talk).split("/")[2] for _ in range(5)}

    assert len(tokens) == 5
    assert all(len(token) >= 43 for token in tokens)  # 256 random bits, URL-safe base64


def test_a_reply_still_being_generated_is_left_out(talk, alice):
    talk.answer.status = Message.Status.STREAMING
    talk.answer.save()

    page = page_text(signed_in(alice).get(share(signed_in(alice), talk)))

    assert "And its circumference?" in page and "2πr" not in page


def test_it_shares_the_branch_the_page_shows_through_a_search_hit(talk, alice):
    client = signed_in(alice)
    shown = page_text(client.get(f"/c/{talk.id}/?show={talk.first.id}"))
    assert f"/c/{talk.id}/share/?through={talk.first.id}" in shown

    link = share(client, talk, through=str(talk.first.id))

    page = page_text(client.get(link))
    assert "Old version." in page and "circumference" not in page


def test_the_system_prompt_and_costs_are_hidden_unless_the_owner_shows_them(talk, alice, bob):
    hidden = signed_in(bob).get(share(signed_in(alice), talk))
    shown = signed_in(bob).get(
        share(signed_in(alice), talk, show_system_prompt="on", show_costs="on")
    )

    assert SECRET_PROMPT not in page_text(hidden)
    assert "0.00123" not in page_text(hidden) and "18 tokens" not in page_text(hidden)
    assert SECRET_PROMPT in page_text(shown)
    assert "0.00123" in page_text(shown) and "11 + 7 = 18 tokens" in page_text(shown)
    # What is not shown is not kept with the share either.
    assert Share.objects.filter(system_prompt=SECRET_PROMPT).count() == 1


def test_only_people_signed_in_can_read_it_unless_the_owner_says_anyone(talk, alice, charlie):
    members = share(signed_in(alice), talk)
    anyone = share(signed_in(alice), talk, audience="anyone")

    refused = Client().get(members)
    assert refused.status_code == 302
    assert refused["Location"] == f"/accounts/login/?next={members}"
    assert "circle" not in page_text(refused)
    assert signed_in(charlie).get(members).status_code == 200
    public = Client().get(anyone)
    assert public.status_code == 200
    assert "What is the area of a circle?" in page_text(public)
    assert "Sign in to continue in your own conversation" in page_text(public)


def test_the_page_is_private_unindexed_and_plainly_titled(talk, alice):
    response = Client().get(share(signed_in(alice), talk, audience="anyone"))
    page = page_text(response)

    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert '<meta name="description" content="A conversation shared from Confab.">' in page
    assert "<title>Circles · Confab</title>" in page
    assert "og:" not in page and "twitter:" not in page  # no previews
    assert {"private", "no-store"} <= {d.strip() for d in response["Cache-Control"].split(",")}


def test_another_user_never_reaches_the_conversation_through_it(talk, alice, charlie):
    link = share(signed_in(alice), talk, audience="anyone")
    client = signed_in(charlie)

    page = page_text(client.get(link))

    assert str(talk.id) not in page
    assert not any(str(m.id) in page for m in talk.messages.all())
    assert "Revoke" not in page  # the owner's controls are the owner's
    assert client.get(f"/c/{talk.id}/").status_code == 404
    assert client.get(f"/c/{talk.id}/export.json").status_code == 404


def test_a_reader_continues_it_in_a_conversation_of_their_own(talk, alice, charlie, model):
    link = share(signed_in(alice), talk, audience="anyone")
    client = signed_in(charlie)
    before = list(talk.messages.values_list("id", "content"))

    response = client.post(link + "continue/")

    copy = Conversation.objects.get(owner=charlie)
    assert response["Location"] == f"/c/{copy.id}/"
    assert copy.id != talk.id and copy.title == "Circles"
    assert copy.system_prompt == ""  # not shown, so not copied
    assert copy.model == model  # the last reply's, which charlie may use
    assert [(m.role, m.content) for m in copy.branch()] == [
        ("user", "What is the area of a circle?"),
        ("assistant", "It is $\\pi r^2$."),
        ("user", "And its circumference?"),
        ("assistant", "It is **2πr**."),
    ]
    assert all(m.cost is None and m.total_tokens == 0 for m in copy.messages.all())
    assert all(not m.request for m in copy.messages.all())
    assert list(talk.messages.values_list("id", "content")) == before
    assert "2πr" in page_text(client.get(response["Location"]))


def test_continuing_needs_a_signed_in_reader_and_a_post(talk, alice):
    link = share(signed_in(alice), talk, audience="anyone")

    assert Client().post(link + "continue/")["Location"] == f"/accounts/login/?next={link}"
    assert signed_in(alice).get(link + "continue/").status_code == 405
    assert Conversation.objects.count() == 1


def test_it_rejects_outsider_revoking(talk, alice, charlie):
    link = share(signed_in(alice), talk)

    assert signed_in(charlie).post(link + "revoke/").status_code == 404
    assert Client().post(link + "revoke/").status_code == 302  # to sign in
    assert signed_in(alice).get(link + "revoke/").status_code == 405

    assert signed_in(charlie).get(link).status_code == 200
    assert Share.objects.get().revoked is None


def test_a_revoked_link_answers_404_to_everyone(talk, alice, charlie):
    client = signed_in(alice)
    link = share(client, talk, audience="anyone")

    response = client.post(link + "revoke/", follow=True)

    assert response.redirect_chain[-1][0] == "/settings/shares/"
    assert "revoked" in page_text(response)
    for reader in (client, signed_in(charlie), Client()):
        assert reader.get(link).status_code == 404
        assert reader.post(link + "continue/").status_code == 404


def test_a_link_may_expire(talk, alice, bob):
    link = share(signed_in(alice), talk, expires_in_days="7")
    shared = Share.objects.get()
    assert timedelta(days=6) < shared.expires - timezone.now() <= timedelta(days=7)
    assert signed_in(bob).get(link).status_code == 200

    Share.objects.update(expires=timezone.now() - timedelta(seconds=1))

    assert signed_in(bob).get(link).status_code == 404


def test_deleting_the_conversation_takes_its_links_down_until_restored(talk, alice, bob):
    client = signed_in(alice)
    link = share(client, talk)

    client.post(f"/c/{talk.id}/delete/")
    assert signed_in(bob).get(link).status_code == 404
    client.post(f"/c/{talk.id}/restore/")
    assert signed_in(bob).get(link).status_code == 200
    get_user_model().objects.filter(username="alice").delete()
    assert Share.objects.count() == 0


def test_sharing_is_a_post_of_the_owners(talk, alice, charlie):
    url, choices = f"/c/{talk.id}/share/", {"audience": "anyone"}
    assert signed_in(alice).get(url).status_code == 200
    assert signed_in(charlie).post(url, choices).status_code == 404
    assert Client().post(url, choices).status_code == 302
    assert Share.objects.count() == 0


def test_shared_links_lists_the_users_own_links(talk, alice, charlie):
    client = signed_in(alice)
    live = share(client, talk)
    revoked = share(client, talk, audience="anyone")
    client.post(revoked + "revoke/")

    mine = page_text(client.get("/settings/shares/"))
    theirs = page_text(signed_in(charlie).get("/settings/shares/"))

    assert f'href="http://testserver{live}"' in mine
    assert f"{revoked}revoke/" not in mine and "revoked" in mine
    assert "Circles" not in theirs and "You have not shared anything yet." in theirs


def test_an_administrator_can_revoke_any_link(talk, alice, alice_admin, bob):
    link = share(signed_in(alice), talk)

    alice_admin.post(
        "/admin/conversations/share/",
        {"action": "revoke", "_selected_action": [str(Share.objects.get().id)]},
    )

    assert signed_in(bob).get(link).status_code == 404


def test_sharing_and_revoking_need_the_pages_csrf_token(talk, alice):
    link = share(signed_in(alice), talk)
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(alice)

    assert forged.post(f"/c/{talk.id}/share/", {"audience": "anyone"}).status_code == 403
    assert forged.post(link + "revoke/").status_code == 403
    assert Share.objects.count() == 1 and Share.objects.get().revoked is None
