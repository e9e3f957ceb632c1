"""Password reset by e-mail: Django's views, our templates in English and Chinese, the
message read from a real SMTP server and its link followed."""

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import BreakGlassAccount
from tests.helpers import PASSWORD
from tests.mailbox import body, link

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new 93 password"


def signs_in(username, password):
    response = Client().post(reverse("login"), {"username": username, "password": password})
    return response.status_code == 302


def ask_for_reset(client, address, **headers):
    return client.post(reverse("password_reset"), {"email": address}, **headers)


def test_a_reset_link_arrives_and_sets_a_new_password(client, alice, mailbox):
    assert ask_for_reset(client, "alice@example.com").url == reverse("password_reset_done")

    message = mailbox.wait_for("alice@example.com")
    assert message["Subject"] == "Reset your Confab password"
    assert "Hello alice," in body(message)
    form_page = client.get(link(message), follow=True)  # Django hides the token, then asks
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert "Your new password is set." in done.content.decode()
    assert signs_in("alice", NEW_PASSWORD)
    assert not signs_in("alice", PASSWORD)
    # The link worked once.
    again = Client().get(link(message), follow=True).content.decode()
    assert "This link no longer works" in again


def test_the_reset_email_and_pages_speak_chinese(client, alice, mailbox):
    page = client.get(reverse("password_reset"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    ask_for_reset(client, "alice@example.com", HTTP_ACCEPT_LANGUAGE="zh-CN")

    message = mailbox.wait_for("alice@example.com")
    assert "重置密码" in page
    assert message["Subject"] == "重置你的 Confab 密码"
    assert "你好 alice" in body(message)


def test_an_unknown_address_is_told_the_same_and_sent_nothing(client, alice, mailbox):
    response = ask_for_reset(client, "nobody@example.com")

    assert response.url == reverse("password_reset_done")
    assert mailbox.messages == []


def test_the_sign_in_page_offers_a_reset(client, alice):
    # Someone has an account: a fresh install's sign-in leads to creating the first.
    page = client.get(reverse("login")).content.decode()

    assert reverse("password_reset") in page
    assert 'name="username"' in page and 'name="password"' in page


def test_under_sso_only_no_link_goes_to_an_account_that_may_not_use_a_password(
    client, alice, bob, mailbox, settings
):
    settings.CONFAB_SSO_ONLY = True
    BreakGlassAccount.objects.create(user=bob)

    ask_for_reset(client, "alice@example.com")
    ask_for_reset(client, "bob@example.com")

    mailbox.wait_for("bob@example.com")
    assert mailbox.to("alice@example.com") == []
