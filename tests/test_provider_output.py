"""What a provider sends is untrusted: odd text never loses a reply, and no secret a request
carried (the key, an extra header) reaches a user, a page or a log, whatever path the
provider's words take."""

import asyncio
import json
import logging

import pytest
from channels.db import database_sync_to_async

from conversations import upstream
from conversations.models import Provider
from tests.fake_upstream import chunk, http_error, sse, stream_headers
from tests.helpers import API_KEY

pytestmark = pytest.mark.django_db(transaction=True)

AZURE_KEY = "azure-api-key-value-7c1d"


def raw_sse(text):
    """A content delta written with JSON escapes as they are, lone surrogates included."""
    return b'data: {"choices":[{"index":0,"delta":{"content":"' + text + b'"}}]}\n\n'


async def test_a_surrogate_pair_split_across_two_chunks_is_joined(stream):
    steps = [stream_headers(), raw_sse(b"Smile \\ud83d"), raw_sse(b"\\ude00, then more."),
             sse(chunk(finish_reason="stop")), sse("[DONE]")]  # fmt: skip

    [message] = await stream(steps)

    assert (message.status, message.content) == ("complete", "Smile \U0001f600, then more.")


async def test_a_lone_surrogate_becomes_a_replacement_character_and_the_rest_is_kept(stream):
    steps = [
        stream_headers(),
        raw_sse(b"before \\udc00 after"),
        b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"think \\ud800"}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",'
        b'"function":{"name":"f\\udfff","arguments":"{\\"a\\": \\"\\ud801\\"}"}}]}}]}\n\n',
        raw_sse(b" end \\ud83d"),  # its pair never comes
        sse(chunk(finish_reason="stop")),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert message.status == "complete"
    assert message.content == "before \ufffd after end \ufffd"
    assert message.reasoning == "think \ufffd"
    assert message.tool_calls[0]["function"] == {"name": "f\ufffd", "arguments": '{"a": "\ufffd"}'}


async def test_an_error_is_redacted_before_it_is_cut_short(stream):
    echo = "x" * 470 + f" Authorization: Bearer {API_KEY} was refused"

    [message] = await stream(http_error(401, echo))

    assert message.status == "failed"
    assert API_KEY[:8] not in message.error and message.error.endswith("[redact")


@pytest.mark.parametrize(
    "steps",
    [
        http_error(400, f"bad header api-key: {AZURE_KEY}"),
        [stream_headers(), sse(chunk({"content": "Partial"})),
         sse({"error": {"message": f"upstream saw api-key {AZURE_KEY}"}})],
        [stream_headers(), f"data: not json, api-key={AZURE_KEY}\n\n".encode()],
        [stream_headers(content_type="text/html"), f"<p>{AZURE_KEY}</p>".encode()],
        [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
         + json.dumps({"unexpected": AZURE_KEY}).encode()],
    ],
    ids=["http-error", "stream-error", "bad-chunk", "not-a-stream", "not-a-completion"],
)  # fmt: skip
async def test_an_extra_header_secret_is_redacted_on_every_path(stream, provider, steps):
    provider.extra_headers = {"api-key": AZURE_KEY, "X-Title": "Confab"}
    await database_sync_to_async(provider.save)()

    [message] = await stream(steps)

    assert message.status == "failed"
    assert AZURE_KEY not in message.error and "[redacted]" in message.error


def test_the_admins_test_connection_redacts_secrets_too(fake_upstream):
    echo = "y" * 480 + f" key {API_KEY}, api-key {AZURE_KEY}"
    fake_upstream.models_script = http_error(401, echo)
    provider = Provider(name="p", base_url=fake_upstream.url, api_key=API_KEY,
                        extra_headers={"api-key": AZURE_KEY})  # fmt: skip

    async def refused():
        try:
            await upstream.list_models(provider)
        except upstream.UpstreamError as error:
            return str(error)

    message = asyncio.run(refused())

    assert "HTTP 401" in message and "[redact" in message
    assert API_KEY[:8] not in message and AZURE_KEY[:8] not in message


async def test_logs_hold_no_reply_text_and_no_secret(stream, provider, caplog):
    caplog.set_level(logging.DEBUG)
    provider.extra_headers = {"api-key": AZURE_KEY}
    await database_sync_to_async(provider.save)()
    secret_text = "PLUM-ORCHARD-4417"
    steps = [stream_headers(), sse(chunk({"content": f"Our plan: {secret_text}"})),
             raw_sse(b"\\ud800 odd"), f"data: {{broken {secret_text}\n\n".encode()]  # fmt: skip

    [message] = await stream(steps)

    assert message.status == "failed" and secret_text in message.content
    logged = "\n".join(
        record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records
    )
    for leak in (secret_text, API_KEY, AZURE_KEY, "sessionid"):
        assert leak not in logged
