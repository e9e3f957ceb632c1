"""Invitations: an administrator invites people by e-mail (one, or a pasted list, into
groups), the link arrives through a real SMTP server, works once and expires; pending
invitations are listed in admin and can be revoked."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Invitation, SiteSettings
from tests.helpers import PASSWORD
from tests.mailbox import body, link

pytestmark = pytest.mark.django_db

INVITE = "/admin/conversations/invitation/add/"
LIST = "/admin/conversations/invitation/"


def accept(client, url, username="dana", password=PASSWORD):
    return client.post(url, {"username": username, "password1": password, "password2": password})


def test_an_invitation_arrives_by_email_and_makes_one_account_in_its_groups(alice_admin, mailbox):
    engineers = Group.objects.create(name="engineers")

    response = alice_admin.post(
        INVITE, {"emails": "dana@example.com", "groups": [engineers.pk]}, follow=True
    )

    assert "Invitation sent to dana@example.com." in response.content.decode()
    message = mailbox.wait_for("dana@example.com")
    assert message["Subject"] == "You are invited to Confab"
    assert "alice invites you to Confab" in body(message)
    url = link(message)
    page = Client().get(url)
    assert page.status_code == 200
    assert "Make the account of dana@example.com." in page.content.decode()

    newcomer = Client()
    assert accept(newcomer, url).status_code == 302
    dana = get_user_model().objects.get(username="dana")
    assert dana.email == "dana@example.com"
    assert list(dana.groups.all()) == [engineers]
    assert newcomer.get(reverse("chat")).status_code == 200  # signed in
    # The link worked once.
    assert Client().get(url).status_code == 410
    assert accept(Client(), url, username="mallory").status_code == 410
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_a_pasted_list_invites_each_address_once(alice_admin, mailbox):
    pasted = "erin@example.com, Frank <frank@example.com>\ngrace@example.com; ERIN@example.com"

    alice_admin.post(INVITE, {"emails": pasted})

    for address in ("erin@example.com", "frank@example.com", "grace@example.com"):
        mailbox.wait_for(address)
    assert sorted(Invitation.objects.values_list("email", flat=True)) == [
        "erin@example.com",
        "frank@example.com",
        "grace@example.com",
    ]
    assert len({link(mailbox.wait_for(a)) for a in ("erin@example.com", "frank@example.com")}) == 2


def test_it_refuses_a_list_with_something_that_is_no_address(alice_admin, mailbox):
    response = alice_admin.post(INVITE, {"emails": "erin@example.com\nnot an address"})

    assert "Not e-mail addresses: not an address" in response.content.decode()
    assert not Invitation.objects.exists()
    assert mailbox.messages == []


def test_the_link_expires_after_the_site_setting(alice_admin, mailbox):
    site = SiteSettings.load()
    site.invitation_days = 3
    site.save()
    alice_admin.post(INVITE, {"emails": "dana@example.com"})
    invitation = Invitation.objects.get()

    assert invitation.expires - invitation.created == timedelta(days=3)
    Invitation.objects.update(expires=timezone.now() - timedelta(seconds=1))
    url = link(mailbox.wait_for("dana@example.com"))
    assert Client().get(url).status_code == 410
    assert accept(Client(), url).status_code == 410


def test_seven_days_by_default():
    assert SiteSettings.load().invitation_days == 7


def test_pending_invitations_are_listed_and_can_be_revoked(alice_admin, mailbox):
    alice_admin.post(INVITE, {"emails": "dana@example.com, erin@example.com"})
    url = link(mailbox.wait_for("dana@example.com"))
    accept(Client(), link(mailbox.wait_for("erin@example.com")), username="erin")

    alice_admin.get(LIST)  # shows, and so clears, "Invitations sent to …"
    pending = alice_admin.get(LIST, {"status": "pending"}).content.decode()
    assert "dana@example.com" in pending and "erin@example.com" not in pending

    dana = Invitation.objects.get(email="dana@example.com")
    alice_admin.post(LIST, {"action": "revoke", "_selected_action": [dana.pk]})

    assert Invitation.objects.get(pk=dana.pk).status == Invitation.Status.REVOKED
    assert Client().get(url).status_code == 410


def test_a_new_invitation_replaces_the_pending_one_to_that_address(alice_admin, mailbox):
    alice_admin.post(INVITE, {"emails": "dana@example.com"})
    first = link(mailbox.wait_for("dana@example.com"))
    mailbox.clear()
    alice_admin.post(INVITE, {"emails": "dana@example.com"})
    second = link(mailbox.wait_for("dana@example.com"))

    assert Client().get(first).status_code == 410
    assert Client().get(second).status_code == 200


def test_a_mail_server_that_refuses_leaves_no_invitation(alice_admin, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there

    response = alice_admin.post(INVITE, {"emails": "dana@example.com"}, follow=True)

    assert "nothing was sent to dana@example.com" in response.content.decode()
    assert not Invitation.objects.exists()


def test_only_administrators_invite(client, bob, mailbox):
    client.force_login(bob)

    response = client.post(INVITE, {"emails": "dana@example.com"})

    assert response.status_code == 302  # to admin's sign-in
    assert not Invitation.objects.exists()


def test_the_invitation_page_speaks_chinese(alice_admin, mailbox):
    alice_admin.post(INVITE, {"emails": "dana@example.com"})
    url = link(mailbox.wait_for("dana@example.com"))

    page = Client().get(url, HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    assert "接受邀请" in page
