"""Providers that do not answer never stop Confab: marked unreachable with the reason in
words, retried in the background and from admin, and the pages told what they may pick."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import translation

from conversations import discovery
from conversations.management.commands.serve import free_port
from conversations.models import LanguageModel, Provider
from tests.fake_upstream import DEFAULT_MODEL
from tests.helpers import API_KEY, send_event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def in_english():
    """Words outside a request are in the site's language, whatever a test before left."""
    with translation.override("en"):
        yield


@pytest.fixture
def dead_url():
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


def test_it_keeps_a_provider_that_does_not_answer_and_says_why(dead_url):
    provider, added, error = discovery.connect("Default", dead_url, API_KEY)

    provider.refresh_from_db()
    assert added == [] and error is not None
    assert provider.status == Provider.Status.UNREACHABLE
    host = dead_url.split("/")[2]
    assert provider.status_text == (
        f"unreachable: {host} refused the connection (is the server running, on that port?)"
    )
    assert "ClientConnectorError" not in provider.status_detail


def test_it_names_a_host_that_does_not_exist():
    provider, _, _ = discovery.connect("Typo", "http://no-such-host.invalid/v1", "")

    assert provider.status_text == (
        "unreachable: the host name no-such-host.invalid could not be found (DNS)"
    )


@pytest.mark.django_db(transaction=True)
async def test_it_offers_the_models_once_the_provider_answers_again(fake_upstream):
    provider = await database_sync_to_async(Provider.objects.create)(
        name="Default", base_url=fake_upstream.url, status=Provider.Status.UNREACHABLE
    )

    await discovery.retry_unreachable()

    await database_sync_to_async(provider.refresh_from_db)()
    assert provider.status == Provider.Status.READY
    models = await database_sync_to_async(list)(
        provider.models.values_list("upstream_id", "enabled")
    )
    assert models == [(DEFAULT_MODEL, True)]  # its first models: offered, as serve offers them


@pytest.mark.django_db(transaction=True)
async def test_models_it_lists_later_wait_for_an_administrator(fake_upstream, model):
    fake_upstream.script("newer-model", [])
    await database_sync_to_async(Provider.objects.filter(pk=model.provider_id).update)(
        status=Provider.Status.UNREACHABLE
    )

    await discovery.retry_unreachable()

    newer = await database_sync_to_async(LanguageModel.objects.get)(upstream_id="newer-model")
    assert not newer.enabled


def test_the_admins_test_button_names_the_host_and_the_reason(alice_admin, dead_url):
    dead = Provider.objects.create(name="Dead", base_url=dead_url, api_key="sk-never-shown-1234")

    response = alice_admin.post(
        reverse("admin:conversations_provider_changelist"),
        {"action": "test_connection", "_selected_action": [dead.pk]},
        follow=True,
    )

    page = response.content.decode()
    host = dead_url.split("/")[2]
    assert f"Dead: unreachable: {host} refused the connection" in page
    assert "Error" not in page.split('class="messagelist"')[1].split("</ul>")[0]
    assert "sk-never-shown-1234" not in page
    listing = alice_admin.get(reverse("admin:conversations_provider_changelist")).content.decode()
    assert f"unreachable: {host} refused the connection" in listing


def test_the_admins_test_button_brings_a_provider_back(alice_admin, fake_upstream):
    back = Provider.objects.create(
        name="Back", base_url=fake_upstream.url, status=Provider.Status.UNREACHABLE
    )

    alice_admin.post(
        reverse("admin:conversations_provider_changelist"),
        {"action": "test_connection", "_selected_action": [back.pk]},
    )

    back.refresh_from_db()
    assert back.status == Provider.Status.READY
    assert back.models.filter(upstream_id=DEFAULT_MODEL, enabled=True).exists()


def test_chat_says_which_provider_cannot_be_reached(client, alice, model, dead_url):
    discovery.connect("Default", dead_url, "")
    client.force_login(alice)

    page = client.get(reverse("chat")).content.decode()

    host = dead_url.split("/")[2]
    assert f"Confab cannot reach the provider “Default”: {host} refused the connection" in page


def test_a_model_being_prepared_shows_but_cannot_be_picked_yet(client, alice, model):
    local = Provider.objects.create(
        name="Local", base_url="http://127.0.0.1:9/v1", bundled=True,
        status=Provider.Status.PREPARING,
    )  # fmt: skip
    LanguageModel.objects.create(provider=local, upstream_id="smol", display_name="Smol")
    client.force_login(alice)

    page = client.get(reverse("chat")).content.decode()
    offer = client.get(reverse("offered_models")).json()

    assert "disabled data-bundled>Smol (preparing…)</option>" in page
    assert [(o["label"], o["disabled"]) for o in offer["options"]] == [
        ("Fake model", False),
        ("Smol (preparing…)", True),
    ]
    assert offer["selected"] == str(model.public_id)


@pytest.mark.django_db(transaction=True)
async def test_a_send_to_a_model_being_prepared_is_refused(alice, provider, sockets):
    smol = await database_sync_to_async(LanguageModel.objects.create)(
        provider=provider, upstream_id="smol"
    )
    await database_sync_to_async(Provider.objects.filter(pk=provider.pk).update)(
        status=Provider.Status.PREPARING
    )
    socket = await sockets(alice)

    await socket.send(**send_event(model=str(smol.public_id)))

    refused = await socket.receive()
    assert refused["code"] == "unavailable"
    assert refused["message"] == (
        "smol is still being prepared: it can be picked as soon as it is ready."
    )


@pytest.mark.django_db(transaction=True)
async def test_every_open_page_hears_when_the_models_on_offer_change(
    alice, bob, model, sockets, settings
):
    settings.CONFAB_MODELS_WATCH_S = 0.05
    pages = [await sockets(alice), await sockets(alice), await sockets(bob)]
    watch = asyncio.ensure_future(discovery.watch_periodically())
    try:
        await asyncio.sleep(0.2)  # the watch has seen the models once
        await database_sync_to_async(LanguageModel.objects.filter(pk=model.pk).update)(
            enabled=False
        )
        heard = [await page.receive(timeout=2) for page in pages]
    finally:
        watch.cancel()

    assert heard == [{"type": "models.changed"}] * 3
