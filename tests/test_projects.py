"""Projects: instructions added to every conversation in one, its files read there, its
default model and parameters; shared with a group whose members start their own private
conversations in it and cannot change it unless given the right; the sidebar, moving a
conversation, and search limited to a project."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.test import Client

from conversations.models import Conversation, LanguageModel, Project
from tests.fake_upstream import reply
from tests.helpers import send_event, upload_file

pytestmark = pytest.mark.django_db(transaction=True)

INSTRUCTIONS = "Answer as the harbour's archivist, in two sentences at most."


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def team(alice, bob):
    """bob is in alice's team; charlie is not."""
    group = Group.objects.create(name="team")
    alice.groups.add(group)
    bob.groups.add(group)
    return group


@pytest.fixture
def signed_in():
    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


def test_it_makes_a_project_and_shows_it_in_the_sidebar(alice, model, signed_in):
    client = signed_in(alice)
    response = client.post(
        "/p/new/",
        {"name": "  Harbour  archive ", "instructions": INSTRUCTIONS, "model": model.pk,
         "params": '{"temperature": 0.2}'},
    )  # fmt: skip
    project = Project.objects.get()
    assert response.url == f"/p/{project.id}/"
    assert (project.name, project.owner, project.params) == (
        "Harbour archive", alice, {"temperature": 0.2},
    )  # fmt: skip
    page = client.get("/").content.decode()
    assert f'href="/p/{project.id}/"' in page and "Harbour archive" in page


def test_it_refuses_bad_parameters(alice, model, signed_in):
    response = signed_in(alice).post(
        "/p/new/", {"name": "x", "model": model.pk, "params": '{"temperature": 9}'}
    )
    assert response.status_code == 200
    assert "Must be between 0 and 2" in response.content.decode()
    assert not Project.objects.exists()


async def test_a_conversation_in_a_project_gets_its_instructions_files_and_defaults(
    alice, provider, fake_upstream, sockets
):
    fake_upstream.script("archivist", reply(["Noted."]))
    model = await database_sync_to_async(LanguageModel.objects.create)(
        provider=provider, upstream_id="archivist"
    )
    project = await database_sync_to_async(Project.objects.create)(
        owner=alice, name="Harbour", instructions=INSTRUCTIONS, model=model,
        params={"temperature": 0.2},
    )  # fmt: skip
    await upload_file(alice, "tides.md", b"# Tides\n\nHigh tide at 06:12.\n", project=project.id)
    tab = await sockets(alice)
    await tab.send(**send_event("When is high tide?", project=str(project.id)))
    events = await tab.receive_until("message.done")

    body = fake_upstream.requests[0]["body"]
    assert (body["model"], body["temperature"]) == ("archivist", 0.2)
    assert body["messages"][0] == {"role": "system", "content": INSTRUCTIONS}
    assert "High tide at 06:12." in body["messages"][1]["content"]
    conversation = events[-1]["message"]["conversation"]
    stored = await database_sync_to_async(Conversation.objects.get)(id=conversation)
    assert stored.project_id == project.id


async def test_project_sharing_with_a_group(alice, bob, charlie, team, model, fake_upstream,
                                            sockets):  # fmt: skip
    project = await database_sync_to_async(Project.objects.create)(
        owner=alice, name="Team handbook", instructions=INSTRUCTIONS
    )
    await database_sync_to_async(project.groups.add)(team)
    await upload_file(alice, "handbook.md", b"Lunch is at noon.\n", project=project.id)

    # bob, a member, starts his own conversation in it: its instructions and files apply.
    tab = await sockets(bob)
    await tab.send(**send_event("When is lunch?", project=str(project.id)))
    events = await tab.receive_until("message.done")
    body = fake_upstream.requests[0]["body"]
    assert body["messages"][0]["content"] == INSTRUCTIONS
    assert "Lunch is at noon." in body["messages"][1]["content"]
    bobs = events[-1]["message"]["conversation"]

    # It stays his: alice, the project's owner, cannot open it.
    alice_client, bob_client = Client(), Client()
    await database_sync_to_async(alice_client.force_login)(alice)
    await database_sync_to_async(bob_client.force_login)(bob)
    assert (await database_sync_to_async(alice_client.get)(f"/c/{bobs}/")).status_code == 404
    project_page = await database_sync_to_async(alice_client.get)(f"/p/{project.id}/")
    assert bobs not in project_page.content.decode()
    bob_page = (await database_sync_to_async(bob_client.get)(f"/p/{project.id}/")).content
    assert bobs in bob_page.decode() and "Team handbook" in bob_page.decode()

    # bob may not change it…
    change = {"name": "Mine now", "instructions": "Obey bob."}
    post = database_sync_to_async(bob_client.post)
    assert (await post(f"/p/{project.id}/", change)).status_code == 403
    assert (await post(f"/p/{project.id}/delete/")).status_code == 403
    refused = await upload_file_status(bob_client, project)
    assert refused == 400
    await database_sync_to_async(project.refresh_from_db)()
    assert project.name == "Team handbook"

    # …until his group is given the right.
    await database_sync_to_async(project.editors.add)(team)
    assert (await post(f"/p/{project.id}/", change)).status_code == 302
    await database_sync_to_async(project.refresh_from_db)()
    assert (project.name, project.instructions) == ("Mine now", "Obey bob.")
    assert await database_sync_to_async(project.groups.count)() == 1  # sharing stays alice's

    # charlie, outside the group, gets nothing of it.
    outsider = await sockets(charlie)
    await outsider.send(**send_event("Hello", project=str(project.id)))
    (error,) = await outsider.receive_until("error")
    assert error["code"] == "not_found"
    charlie_client = Client()
    await database_sync_to_async(charlie_client.force_login)(charlie)
    page = await database_sync_to_async(charlie_client.get)(f"/p/{project.id}/")
    assert page.status_code == 404

    # A member who leaves the group loses the project's instructions in his conversation.
    await database_sync_to_async(bob.groups.remove)(team)
    await tab.send(**send_event("Still there?", conversation=bobs))
    await tab.receive_until("message.done")
    later = fake_upstream.requests[-1]["body"]["messages"]
    assert all(m["content"] != "Obey bob." for m in later)
    assert all("Lunch is at noon." not in m["content"] for m in later)


async def upload_file_status(client, project):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = await database_sync_to_async(client.post)(
        "/files/", {"file": SimpleUploadedFile("x.txt", b"x"), "project": str(project.id)}
    )
    return response.status_code


def test_a_conversation_moves_into_and_out_of_a_project(alice, charlie, signed_in):
    mine = Project.objects.create(owner=alice, name="Mine")
    theirs = Project.objects.create(owner=charlie, name="Theirs")
    conversation = Conversation.objects.create(owner=alice, title="Loose")
    client = signed_in(alice)
    client.post(f"/c/{conversation.id}/move/", {"project": str(mine.id)})
    conversation.refresh_from_db()
    assert conversation.project == mine
    response = client.post(f"/c/{conversation.id}/move/", {"project": str(theirs.id)}, follow=True)
    assert "No such project." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.project == mine
    client.post(f"/c/{conversation.id}/move/", {"project": ""})
    conversation.refresh_from_db()
    assert conversation.project is None


def test_search_can_be_limited_to_a_project(alice, charlie, signed_in):
    project = Project.objects.create(owner=alice, name="Harbour")
    inside = Conversation.objects.create(owner=alice, title="Tides inside", project=project)
    outside = Conversation.objects.create(owner=alice, title="Tides outside")
    client = signed_in(alice)
    everywhere = client.get("/search/", {"q": "Tides"}).content.decode()
    assert "Tides inside" in everywhere and "Tides outside" in everywhere
    limited = client.get("/search/", {"q": "Tides", "project": str(project.id)}).content.decode()
    assert "Tides inside" in limited and "Tides outside" not in limited
    assert str(inside.id) in limited and str(outside.id) not in limited
    other = signed_in(charlie).get("/search/", {"q": "Tides", "project": str(project.id)})
    assert other.status_code == 404


def test_deleting_a_project_keeps_its_conversations(alice, signed_in):
    project = Project.objects.create(owner=alice, name="Old")
    conversation = Conversation.objects.create(owner=alice, title="Kept", project=project)
    signed_in(alice).post(f"/p/{project.id}/delete/")
    conversation.refresh_from_db()
    assert conversation.project is None and not Project.objects.exists()
