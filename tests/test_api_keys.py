"""Personal API keys: made by their user (shown once, kept as a digest), listed, revoked by
their user or an administrator, and made by `manage.py create_api_key`."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from conversations.models import ApiKey, UsageRecord
from conversations.models.keys import digest

pytestmark = pytest.mark.django_db(transaction=True)  # the API's views use their own thread


def test_a_new_key_is_shown_once_and_kept_only_as_a_digest(client, alice, model):
    client.force_login(alice)

    page = client.post(reverse("api_keys"), {"name": "laptop", "expires_in_days": 30}).content
    key = page.decode().split('<code id="new-key">')[1].split("</code>")[0]

    [api_key] = ApiKey.objects.all()
    assert key.startswith("ck-") and len(key) > 40
    assert (api_key.name, api_key.prefix, api_key.digest) == ("laptop", key[:9], digest(key))
    assert api_key.expires is not None
    listed = client.get(reverse("api_keys")).content.decode()
    assert key not in listed and f"{key[:9]}…" in listed
    assert ApiKey.objects.by_key(key) == api_key


def test_a_revoked_key_no_longer_opens_anything(client, alice):
    api_key, key = ApiKey.create(alice, "script")
    client.force_login(alice)

    client.post(reverse("revoke_api_key", args=[api_key.id]))

    assert ApiKey.objects.by_key(key) is None
    assert "revoked" in client.get(reverse("api_keys")).content.decode()


def test_it_rejects_outsider(client, alice, charlie):
    api_key, key = ApiKey.create(alice, "alice's nightly export")
    client.force_login(charlie)

    response = client.post(reverse("revoke_api_key", args=[api_key.id]))

    assert response.status_code == 404 and ApiKey.objects.by_key(key) == api_key
    assert "nightly export" not in client.get(reverse("api_keys")).content.decode()


def test_an_administrator_revokes_any_key(alice_admin, bob):
    api_key, key = ApiKey.create(bob, "bob's script")

    alice_admin.post(
        reverse("admin:conversations_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk]},
    )

    assert ApiKey.objects.by_key(key) is None


def test_the_command_prints_the_key_on_its_last_line(alice):
    out = StringIO()

    call_command("create_api_key", "alice", "--name", "ci", "--expires-days", "7", stdout=out)

    key = out.getvalue().strip().splitlines()[-1]
    assert ApiKey.objects.by_key(key).name == "ci"


def test_my_usage_shows_usage_per_key(client, alice, model):
    api_key, _ = ApiKey.create(alice, "nightly job")
    UsageRecord.objects.create(
        request_id="00000000-0000-0000-0000-000000000001", user=alice, model_name="m",
        status="complete", total_tokens=1234, source="api", api_key=api_key,
    )  # fmt: skip
    client.force_login(alice)

    page = client.get(reverse("my_usage")).content.decode()

    table = page.split('id="usage-by-key"')[1]
    assert "nightly job" in table and "1,234" in table


def test_the_dashboard_shows_usage_per_key(alice_admin, alice):
    api_key, _ = ApiKey.create(alice, "ci pipeline")
    UsageRecord.objects.create(
        request_id="00000000-0000-0000-0000-000000000002", user=alice, model_name="m",
        status="complete", total_tokens=777, source="api", api_key=api_key,
    )  # fmt: skip

    page = alice_admin.get(reverse("admin:conversations_usagerecord_dashboard")).content
    table = page.decode().split('id="top-keys"')[1]

    assert "ci pipeline" in table and "777" in table


def test_the_keys_page_says_when_each_key_was_last_used(client, alice):
    api_key, key = ApiKey.create(alice, "nightly-job")
    client.force_login(alice)
    page = client.get(reverse("api_keys")).content.decode()
    row = page.split("nightly-job", 1)[1].split("</tr>", 1)[0]
    assert row.count("never") == 2  # no expiry, never used

    used = Client().get("/v1/models", headers={"Authorization": f"Bearer {key}"})

    assert used.status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used is not None
    page = client.get(reverse("api_keys")).content.decode()
    shown = date_format(timezone.localtime(api_key.last_used), "SHORT_DATETIME_FORMAT")
    assert shown in page
