"""Conversations are private from administrators: admin shows their metadata, never their
text, unless the site allows reading, and then each reading is recorded for superusers.
One person's data is exported, and deleted, by command."""

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client

from conversations.models import (
    ApiKey,
    Conversation,
    ConversationReading,
    File,
    Message,
    Project,
    SiteSettings,
    UsageRecord,
)

pytestmark = pytest.mark.django_db

SECRET_TITLE = "Salary negotiation plan"
SECRET_PROMPT = "You are my confidant."
SECRET_TEXT = "my salary is 12345 and I want more"
REPLY_TEXT = "ask for 15000"


@pytest.fixture
def conversation(bob, model):
    conversation = Conversation.objects.create(
        owner=bob, title=SECRET_TITLE, system_prompt=SECRET_PROMPT, model=model
    )
    question = Message.objects.create(conversation=conversation, role="user", content=SECRET_TEXT)
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content=REPLY_TEXT,
        prompt_tokens=20,
        completion_tokens=5,
        total_tokens=25,
        cost=Decimal("0.0012"),
    )
    UsageRecord.objects.create(
        request_id=reply.id, user=bob, conversation=conversation, message=reply,
        model=model, model_name=model.upstream_id, status="complete", total_tokens=25,
        cost=Decimal("0.0012"),
    )  # fmt: skip
    return conversation


@pytest.fixture
def files(bob, conversation, settings, tmp_path):
    """Bob's project, shared with a group, and his files: one in the conversation, one in
    the project, and one uploaded but not sent yet; each stored and read."""
    settings.MEDIA_ROOT = tmp_path / "media"
    project = Project.objects.create(owner=bob, name="Raise", instructions="Be bold.")
    project.groups.add(Group.objects.create(name="Sales"))
    made = {}
    for name, where in [
        ("offer.txt", {"conversation": conversation}),
        ("market.txt", {"project": project}),
        ("draft.txt", {}),
    ]:
        file = File(owner=bob, name=name, kind="text", size=5, status="ready", **where)
        file.blob.save(name, ContentFile(f"bytes of {name}".encode()))
        file.passages.create(ordinal=0, text=f"the text of {name}")
        made[name] = file
    return made


def admin_pages(client, conversation):
    pages = [
        "/admin/conversations/conversation/",
        f"/admin/conversations/conversation/{conversation.pk}/change/",
        f"/admin/conversations/conversation/?q={SECRET_TITLE.split()[0]}",
        "/admin/conversations/usagerecord/",
        f"/admin/conversations/usagerecord/{UsageRecord.objects.get().pk}/change/",
    ]
    return {path: client.get(path) for path in pages}


def allow_reading(allowed=True):
    site = SiteSettings.load()
    site.admins_may_read_conversations = allowed
    site.save()


def test_admin_shows_no_conversation_text_by_default(alice_admin, conversation):
    for path, response in admin_pages(alice_admin, conversation).items():
        page = response.content.decode()
        assert response.status_code == 200, path
        for text in (SECRET_TITLE, SECRET_PROMPT, SECRET_TEXT, REPLY_TEXT):
            assert text not in page, (path, text)
    assert not ConversationReading.objects.exists()


def test_admin_shows_a_conversations_metadata(alice_admin, conversation):
    page = alice_admin.get(
        f"/admin/conversations/conversation/{conversation.pk}/change/"
    ).content.decode()
    listing = alice_admin.get("/admin/conversations/conversation/").content.decode()

    assert str(conversation.id)[:8] in listing and "bob" in listing
    assert "Fake model" in page and "bob" in page
    assert ">2<" in listing  # messages
    assert ">25<" in listing  # tokens


def test_with_reading_allowed_each_opening_is_recorded(alice_admin, conversation):
    allow_reading()
    url = f"/admin/conversations/conversation/{conversation.pk}/change/"

    first = alice_admin.get(url).content.decode()
    alice_admin.get(url)

    assert SECRET_TEXT in first and REPLY_TEXT in first and SECRET_PROMPT in first
    readings = list(ConversationReading.objects.order_by("created"))
    assert [(r.reader_name, r.owner_name, r.conversation_ref) for r in readings] == [
        ("alice", "bob", conversation.id),
        ("alice", "bob", conversation.id),
    ]
    # The list still shows no text: reading is one conversation at a time, recorded.
    listing = alice_admin.get("/admin/conversations/conversation/").content.decode()
    assert SECRET_TITLE not in listing and SECRET_TEXT not in listing
    assert ConversationReading.objects.count() == 2


def test_the_readings_are_for_superusers_only(alice_admin, charlie, conversation):
    allow_reading()
    alice_admin.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    charlie.is_staff = True
    charlie.save()
    charlie.user_permissions.add(*_all_conversation_permissions())
    staff = Client()
    staff.force_login(charlie)

    superuser_view = alice_admin.get("/admin/conversations/conversationreading/")
    staff_view = staff.get("/admin/conversations/conversationreading/")

    assert superuser_view.status_code == 200 and "bob" in superuser_view.content.decode()
    assert staff_view.status_code == 403
    assert alice_admin.get("/admin/conversations/conversationreading/add/").status_code == 403
    reading = ConversationReading.objects.get()
    delete = f"/admin/conversations/conversationreading/{reading.pk}/delete/"
    assert alice_admin.post(delete, {"post": "yes"}).status_code == 403
    assert ConversationReading.objects.count() == 1


def _all_conversation_permissions():
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="conversations")


def test_admins_cannot_delete_a_conversation_from_admin(alice_admin, conversation):
    url = f"/admin/conversations/conversation/{conversation.pk}/delete/"

    assert alice_admin.post(url, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_a_users_data_is_exported_by_command(bob, conversation, tmp_path):
    ApiKey.create(bob, "laptop")
    output = tmp_path / "bob.json"

    call_command("export_user_data", "bob", "--output", str(output))

    exported = json.loads(output.read_text())
    assert exported["account"]["username"] == "bob"
    assert exported["account"]["email"] == "bob@example.com"
    (only,) = exported["conversations"]
    assert only["conversation"]["title"] == SECRET_TITLE
    assert [m["content"] for m in only["messages"]] == [SECRET_TEXT, REPLY_TEXT]
    assert [(u["total_tokens"], u["cost"]) for u in exported["usage"]] == [(25, "0.00120000")]
    assert [k["name"] for k in exported["api_keys"]] == ["laptop"]


def test_the_export_holds_the_users_projects_and_files_with_their_text(bob, files, tmp_path):
    output = tmp_path / "bob.json"

    call_command("export_user_data", "bob", "--output", str(output))

    exported = json.loads(output.read_text())
    (project,) = exported["projects"]
    assert (project["name"], project["instructions"], project["shared_with"]) == (
        "Raise", "Be bold.", ["Sales"]
    )  # fmt: skip
    by_name = {f["name"]: f for f in exported["files"]}
    assert sorted(by_name) == ["draft.txt", "market.txt", "offer.txt"]
    assert by_name["offer.txt"]["text"] == "the text of offer.txt"
    assert by_name["market.txt"]["project"] == project["id"]
    stored = by_name["draft.txt"]["stored_as"]
    with default_storage.open(stored) as original:
        assert original.read() == b"bytes of draft.txt"


def test_a_users_data_is_deleted_and_the_ledger_keeps_an_anonymous_row(
    alice, bob, conversation, model
):
    ApiKey.create(bob, "laptop")
    Conversation.objects.create(owner=alice, title="Alice's own", model=model)

    call_command("delete_user_data", "bob", "--yes")

    assert not Conversation.objects.filter(owner=bob).exists()
    assert not Message.objects.filter(content=SECRET_TEXT).exists()
    assert not ApiKey.objects.filter(user=bob).exists()
    bob.refresh_from_db()
    assert bob.username == f"deleted-{bob.pk}" and bob.email == ""
    assert not bob.is_active and not bob.has_usable_password()
    record = UsageRecord.objects.get()
    assert (record.user, record.conversation, record.total_tokens) == (bob, None, 25)
    assert Conversation.objects.filter(owner=alice).count() == 1  # nobody else's


def test_deleting_a_users_data_removes_their_projects_and_files_bytes_and_all(
    alice, bob, files, model, django_capture_on_commit_callbacks
):
    stored = [file.blob.name for file in files.values()]
    assert all(default_storage.exists(name) for name in stored)
    project = Project.objects.get(owner=bob)
    theirs = Conversation.objects.create(owner=alice, title="In Bob's project", model=model)
    theirs.project = project
    theirs.save()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("delete_user_data", "bob", "--yes")

    assert not Project.objects.filter(owner=bob).exists()
    assert not File.objects.filter(owner=bob).exists()
    assert not any(default_storage.exists(name) for name in stored)
    theirs.refresh_from_db()  # Alice's conversation stays, outside any project
    assert (theirs.title, theirs.project) == ("In Bob's project", None)


def test_an_account_the_ledger_does_not_name_is_deleted(charlie):
    call_command("delete_user_data", "charlie", "--yes")

    assert not get_user_model().objects.filter(username="charlie").exists()
