"""Honest failures: a request that never reached the provider (a refused connection, a host
name that does not resolve, a failed TLS handshake) costs nothing and the ledger says so;
the user reads a plain sentence in their language; the detail goes to the request
inspector and the log."""

import logging

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from conversations.management.commands.serve import free_port
from conversations.models import Message, Provider
from tests.fake_upstream import http_error
from tests.helpers import ledger, send_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dead_provider(model, settings):
    """The model's provider, gone: nothing listens at its address any more."""
    settings.CONFAB_RETRY_BASE_MS = 1
    port = free_port()
    Provider.objects.filter(pk=model.provider_id).update(base_url=f"http://127.0.0.1:{port}/v1")
    return f"127.0.0.1:{port}"


@pytest.fixture(params=["refused", "dns", "tls"])
def unreachable_provider(request, model, fake_upstream, settings):
    """The model's provider, out of reach in each way a request may fail before it is sent:
    nothing listens at its port; its host name does not resolve (`.invalid` names never
    do); it speaks plain HTTP where https:// starts a TLS handshake. What Confab then says
    in the request inspector and the log: the host, and the reason in words."""
    settings.CONFAB_RETRY_BASE_MS = 1
    closed, plain = f"127.0.0.1:{free_port()}", f"127.0.0.1:{fake_upstream.port}"
    base_url, host, reason = {
        "refused": (f"http://{closed}/v1", closed, "the connection was refused"),
        "dns": ("http://nonexistent.invalid/v1", "nonexistent.invalid",
                "the host name could not be found (DNS)"),
        "tls": (f"https://{plain}/v1", plain, "the TLS handshake failed"),
    }[request.param]  # fmt: skip
    Provider.objects.filter(pk=model.provider_id).update(base_url=base_url)
    return f"Could not reach {host}: {reason}"


async def failed_reply(sockets, user, language=b"en"):
    socket = await sockets(user, headers=[(b"accept-language", language)])
    await socket.send(**send_event("Are you there?"))
    return (await socket.receive_until("message.done"))[-1]["message"]


async def test_a_request_that_never_reached_the_provider_costs_nothing(
    alice, model, unreachable_provider, sockets, fake_upstream
):
    done = await failed_reply(sockets, alice)

    assert done["status"] == "failed"
    sentence = "Could not reach the provider “Fake”. Try again, or ask an administrator."
    assert f'<span class="error">{sentence}</span>' in done["html"]
    saved = await database_sync_to_async(Message.objects.get)(id=done["id"])
    assert saved.error.startswith(unreachable_provider)  # the detail, for the inspector
    assert fake_upstream.requests == []  # nothing was asked of the provider
    assert done["usage"]["total_tokens"] == 0 and done["usage"]["estimated"] is False
    assert done["cost"] == "0E-8" or float(done["cost"]) == 0
    [row] = await ledger()
    assert row.reached_provider is False
    assert (row.prompt_tokens, row.completion_tokens, row.cost, row.estimated) == (0, 0, 0, False)


async def test_a_request_that_reached_the_provider_is_counted_as_ever(
    alice, model, sockets, fake_upstream
):
    fake_upstream.script("fake-model", http_error(400, "Unknown parameter: foo"))

    await failed_reply(sockets, alice)

    [row] = await ledger()
    assert row.reached_provider is True and row.prompt_tokens > 0  # estimated, as before


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        (b"en", "Could not reach the provider “Fake”. Try again, or ask an administrator."),
        (b"zh-CN", "无法连接提供方“Fake”。请重试，或联系管理员。"),
    ],
)
async def test_the_user_reads_a_plain_sentence_in_their_language(
    alice, model, dead_provider, sockets, language, sentence
):
    done = await failed_reply(sockets, alice, language)

    assert f'<span class="error">{sentence}</span>' in done["html"]
    assert dead_provider not in done["html"] and "refused" not in done["html"]


async def test_the_detail_goes_to_the_request_inspector_and_the_log(
    alice, model, dead_provider, sockets, caplog
):
    caplog.set_level(logging.WARNING, logger="conversations")

    done = await failed_reply(sockets, alice)

    detail = f"Could not reach {dead_provider}: the connection was refused"
    assert any(detail in record.getMessage() for record in caplog.records)
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    inspected = await database_sync_to_async(client.get)(
        reverse("message_request", args=[done["id"]])
    )
    assert inspected.json()["error"].startswith(detail)


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (401, "The provider “Fake” refused the request: its key may be wrong."),
        (429, "The provider “Fake” is busy or over its limit."),
        (500, "The provider “Fake” had a problem answering."),
        (400, "The provider “Fake” refused the request."),
    ],
)
async def test_a_refusal_reads_as_what_it_means(alice, model, sockets, fake_upstream, status,
                                                sentence, settings):  # fmt: skip
    settings.CONFAB_RETRY_BASE_MS = 1
    fake_upstream.script("fake-model", http_error(status, "Something technical"))

    done = await failed_reply(sockets, alice)

    assert f"{sentence} Try again, or ask an administrator.</span>" in done["html"]
    saved = await database_sync_to_async(Message.objects.get)(id=done["id"])
    assert "Something technical" in saved.error  # the detail is kept
