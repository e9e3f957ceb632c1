"""Signing in and signing up: failed sign-ins lock an account or an address out for a while,
sign-ups are counted per address, and the first account is the only administrator."""

import logging
import threading

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import SiteSettings
from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not the password 7"
ELSEWHERE = "127.0.0.2"


def sign_in(client, username, password, address="127.0.0.1", **headers):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address,
        **headers,
    )  # fmt: skip


def signed_in(client):
    return client.get(reverse("chat")).status_code == 200


def fail(username, times, address="127.0.0.1"):
    for _ in range(times):
        sign_in(Client(), username, WRONG, address)


def test_it_locks_an_account_out_after_five_failed_sign_ins(client, alice):
    fail("alice", 5)

    response = sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)
    # From any address: the account is locked, not only this address.
    assert sign_in(client, "alice", PASSWORD, ELSEWHERE).status_code == 429
    assert not signed_in(client)


def test_it_locks_an_address_out_after_five_failed_sign_ins(client, alice, bob):
    for name in ("carol", "dave", "erin", "frank", "grace"):
        fail(name, 1)

    assert sign_in(client, "bob", PASSWORD).status_code == 429
    assert not signed_in(client)
    assert sign_in(client, "bob", PASSWORD, ELSEWHERE).status_code == 302
    assert signed_in(client)


def test_four_failures_still_let_the_right_password_in(client, alice):
    fail("alice", 4)

    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_lockout_ends_after_the_cool_off(client, alice, settings):
    fail("alice", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME)

    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_the_lockout_is_explained_in_chinese(client, alice):
    fail("alice", 5)

    response = sign_in(client, "alice", PASSWORD, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")

    assert "登录失败次数过多" in response.content.decode()


def test_an_administrator_unlocks_an_account_in_admin(client, alice_admin, bob):
    fail("bob", 5)
    attempts = reverse("admin:axes_accessattempt_changelist")

    listed = alice_admin.get(attempts)
    alice_admin.post(
        attempts,
        {
            "action": "delete_selected",
            "_selected_action": AccessAttempt.objects.values_list("pk", flat=True),
            "post": "yes",
        },
    )

    assert listed.status_code == 200 and "bob" in listed.content.decode()
    assert not AccessAttempt.objects.exists()
    assert sign_in(Client(), "bob", PASSWORD).status_code == 302


def test_an_administrator_unlocks_an_account_from_the_command_line(alice):
    fail("alice", 5)

    call_command("axes_reset_username", "alice")

    assert sign_in(Client(), "alice", PASSWORD).status_code == 302


def test_a_lockout_is_logged_as_a_warning_without_the_password(alice, caplog):
    caplog.set_level(logging.DEBUG)  # every record, whatever the configured levels

    fail("alice", 5)
    sign_in(Client(), "alice", PASSWORD)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Locking out" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in warnings)
    for record in caplog.records:
        assert WRONG not in record.getMessage() and PASSWORD not in record.getMessage()
    stored = AccessAttempt.objects.values_list("get_data", "post_data")
    assert not any(WRONG in text or PASSWORD in text for row in stored for text in row)


def sign_up(client, username, address="127.0.0.1"):
    return client.post(
        reverse("signup"),
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR=address,
    )


@pytest.mark.django_db(transaction=True)
def test_five_simultaneous_first_sign_ups_make_one_administrator():
    start = threading.Barrier(5)
    statuses = {}

    def sign_up_as(name):
        client = Client()
        start.wait()
        try:
            statuses[name] = sign_up(client, name).status_code
        finally:
            connections.close_all()  # the test client leaves its thread's open

    threads = [threading.Thread(target=sign_up_as, args=(f"user{i}",)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    users = get_user_model().objects.all()
    assert [(u.is_superuser, u.is_staff) for u in users] == [(True, True)]
    assert sorted(statuses.values()) == [302, 403, 403, 403, 403]
    assert statuses[users[0].username] == 302


def test_sign_ups_from_one_address_are_limited(client, alice, settings):
    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_open": True})
    settings.CONFAB_SIGNUPS_PER_HOUR = 2
    assert sign_up(client, "bob").status_code == 302
    assert sign_up(Client(), "bob").status_code == 200  # taken: it counts all the same

    refused = sign_up(Client(), "charlie")

    assert refused.status_code == 429
    assert "Too many sign-ups from this address" in refused.content.decode()
    assert not get_user_model().objects.filter(username="charlie").exists()
    assert sign_up(Client(), "charlie", ELSEWHERE).status_code == 302


def test_a_closed_sign_up_counts_nothing(client, alice, settings):
    settings.CONFAB_SIGNUPS_PER_HOUR = 1
    for _ in range(3):
        assert sign_up(Client(), "bob").status_code == 403

    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_open": True})
    assert sign_up(client, "bob").status_code == 302


@pytest.mark.parametrize(
    ("url", "fields", "typed"),
    [
        ("signup", {"username": "dan", "password1": "abc", "password2": "abc"}, "password1"),
        (
            "password_change",
            {"old_password": "correct horse 42", "new_password1": "abc", "new_password2": "abc"},
            "new_password1",
        ),
        (
            "admin:auth_user_add",
            {"username": "dan", "usable_password": "true", "password1": "abc", "password2": "abc"},
            "password1",
        ),
    ],
)
def test_a_weak_password_is_said_to_be_weak_under_the_password(alice_admin, url, fields, typed):
    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_open": True})

    response = alice_admin.post(reverse(url), fields)

    form = response.context["adminform"].form if "adminform" in response.context else None
    form = form or response.context["form"]
    assert "This password is too short." in " ".join(form.errors[typed])
    assert set(form.errors) == {typed}
