"""Every provider's dialect, stored exactly: each case of the corpus (tests/dialects.py, the
survey in docs/providers.md) played by the fake upstream over loopback, down to the reply
Confab stores, and relayed by the gateway (/v1) as the same reply in OpenAI's stream format;
a reply whose stream cannot be understood fails alone, beside one that streams well."""

import threading
import uuid

import httpx
import openai
import pytest
from channels.db import database_sync_to_async

from conversations import upstream
from conversations.generation import runner
from conversations.models import ApiKey
from tests.dialects import CASES
from tests.fake_upstream import chunk, sse, stream_headers, usage_chunk
from tests.helpers import add_model, get_message, send_event, streamed_text

pytestmark = pytest.mark.django_db(transaction=True)


def stored(message):
    calls = [
        {"id": c["id"], "type": c["type"], "function": dict(c["function"])}
        for c in message.tool_calls
    ]
    return {
        "status": message.status,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": calls,
        "finish_reason": message.finish_reason,
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_reply_is_stored_as_the_provider_meant_it(stream, settings, case):
    settings.CONFAB_RETRY_BASE_MS = 1  # a case with an HTTP error is retried quickly
    expected = case.expected

    [message] = await stream(list(case.steps))

    assert stored(message) == {
        "status": expected.status,
        "content": expected.content,
        "reasoning": expected.reasoning,
        "tool_calls": [dict(call) for call in expected.tool_calls],
        "finish_reason": expected.finish_reason,
    }
    if expected.usage is None:
        assert message.usage_estimated, "no usage was reported: it is estimated"
    else:
        counts = (message.prompt_tokens, message.completion_tokens, message.total_tokens,
                  message.cached_tokens, message.reasoning_tokens)  # fmt: skip
        assert (counts, message.usage_estimated) == (expected.usage, False)
    assert expected.error in message.error
    if not expected.error:
        assert message.error == ""


HEALTHY = [f"part{i} " for i in range(12)]


async def test_a_value_not_understood_fails_that_one_reply_never_another(
    alice, bob, provider, sockets, fake_upstream
):
    released = threading.Event()

    def held(body):
        """A healthy reply that says half, holds until the other reply has failed, then ends."""
        yield stream_headers()
        yield sse(chunk({"role": "assistant", "content": ""}))
        for part in HEALTHY[:6]:
            yield sse(chunk({"content": part}))
        while not released.is_set():
            yield 0.01
        for part in HEALTHY[6:]:
            yield sse(chunk({"content": part}))
        yield from (sse(chunk(finish_reason="stop")), usage_chunk(11, 12), sse("[DONE]"))

    fake_upstream.script("healthy", held)
    fake_upstream.script("malformed", [
        stream_headers(), sse(chunk({"role": "assistant", "content": "Half an "})),
        b'data: {"choices": [{"index": 0, "delta": {"content": "ans\n\n',
        sse(chunk({"content": "wer"}, finish_reason="stop")), sse("[DONE]"),
    ])  # fmt: skip
    healthy, malformed = await database_sync_to_async(
        lambda: [add_model(provider, "healthy"), add_model(provider, "malformed")]
    )()
    alices, bobs = await sockets(alice), await sockets(bob)

    await alices.send(**send_event("Tell me.", model=str(healthy.public_id)))
    said = await alices.receive_until("message.delta")  # alice's reply is streaming
    await bobs.send(**send_event("Tell me.", model=str(malformed.public_id)))
    failed = (await bobs.receive_until("message.done"))[-1]["message"]
    healthy_id = said[-1]["message"]
    streaming = healthy_id in runner.generations  # alice's reply was still under way
    released.set()
    events = said + await alices.receive_until("message.done")

    assert streaming
    assert (failed["status"], failed["content"]) == ("failed", "Half an ")
    assert "The provider sent something that is not JSON" in failed["error"]
    done = events[-1]["message"]
    assert (done["status"], done["content"]) == ("complete", "".join(HEALTHY))
    assert streamed_text(events) == "".join(HEALTHY)
    stored = await get_message(done["id"])
    assert (stored.status, stored.content, stored.finish_reason, stored.error) == (
        "complete", "".join(HEALTHY), "stop", "",
    )  # fmt: skip


@pytest.fixture
async def gateway(alice):
    """The gateway (/v1) as alice's script reaches it with OpenAI's own SDK, through the
    whole ASGI stack; its upstream clients are closed afterwards."""
    from chatsite.asgi import application

    _, key = await database_sync_to_async(ApiKey.create)(alice, "dialects")
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport) as http:
        yield openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0
        )
    await upstream.close_clients()


async def relayed(gateway, name):
    """A streamed request for `name` through the gateway: the chunks its caller received
    (as sent), and the error that ended the stream, if one did."""
    chunks, error = [], None
    try:
        stream = await gateway.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Tell me."}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for received in stream:
            chunks.append(received.to_dict())
    except openai.APIError as failure:
        error = failure
    return chunks, error


def folded(chunks):
    """What a caller makes of the chunks of choice 0, folding them as OpenAI's SDK does:
    strings joined, tool calls by their index; the last finish reason."""
    reply = {"content": "", "reasoning": "", "tool_calls": {}, "finish_reason": ""}
    for received in chunks:
        for choice in received["choices"]:
            delta = choice["delta"]
            reply["content"] += delta.get("content") or ""
            reply["reasoning"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                into = reply["tool_calls"].setdefault(
                    call["index"], {"id": "", "type": "function",
                                    "function": {"name": "", "arguments": ""}},
                )  # fmt: skip
                into["id"] += call.get("id", "")
                into["function"]["name"] += call["function"].get("name", "")
                into["function"]["arguments"] += call["function"].get("arguments", "")
            reply["finish_reason"] = choice["finish_reason"] or reply["finish_reason"]
    reply["tool_calls"] = [call for _, call in sorted(reply["tool_calls"].items())]
    return reply


# Bugs of the upstream client (conversations/upstream/chunks.py) that the chat's fold hides
# and the gateway passes on: each case runs, and its mark goes when the bug is fixed.


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_the_gateway_relays_each_dialect_as_a_well_formed_openai_stream(
    gateway, provider, fake_upstream, settings, case
):
    settings.CONFAB_RETRY_BASE_MS = 1  # a case with an HTTP error is retried quickly
    expected = case.expected
    name = f"m-{uuid.uuid4().hex[:8]}"
    fake_upstream.script(name, list(case.steps))
    await database_sync_to_async(add_model)(provider, name)

    chunks, error = await relayed(gateway, name)

    # Well formed: one id, OpenAI's object, the model as asked; each choice's first delta
    # names the role; usage, when it comes, alone and last.
    assert len({c["id"] for c in chunks}) <= 1
    assert all((c["object"], c["model"]) == ("chat.completion.chunk", name) for c in chunks)
    spoke = set()
    for received in chunks:
        for choice in received["choices"]:
            assert choice["index"] in spoke or choice["delta"].get("role") == "assistant"
            spoke.add(choice["index"])
    assert all("usage" not in c for c in chunks[:-1])
    assert spoke <= {0}
    assert folded(chunks) == {
        "content": expected.content,
        "reasoning": expected.reasoning,
        "tool_calls": [dict(call) for call in expected.tool_calls],
        "finish_reason": expected.finish_reason,
    }
    if expected.status == "complete":
        assert error is None
        usage = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == []
        if expected.usage is not None:
            counts = (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
                      usage["prompt_tokens_details"]["cached_tokens"],
                      usage["completion_tokens_details"]["reasoning_tokens"])  # fmt: skip
            assert counts == expected.usage
    else:  # failed or interrupted: a clean error, an HTTP one when nothing was said before
        assert error is not None and expected.error in error.message
        if not chunks:
            assert isinstance(error, openai.APIStatusError) and error.status_code == 502
