"""Every provider's way of streaming, byte for byte, down to the stored message.

Each test serves its own SSE transcript from the fake upstream over loopback and checks
the message(s) Confab stores: content, reasoning, tool calls, finish reason, status, usage.
"""

import json

import pytest
from channels.db import database_sync_to_async

from conversations.models import UsageRecord
from tests.fake_upstream import CLOSE, chunk, http_error, reply, sse, stream_headers
from tests.helpers import API_KEY, split_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def usage(prompt, completion, **extra):
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **extra,
    }


def usage_chunk(**counts):
    return sse(chunk(choices=False, usage=usage(**counts)))


def stored(message):
    return {
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": message.tool_calls,
        "finish_reason": message.finish_reason,
        "status": message.status,
        "usage": message.usage_dict(),
    }


def expected(content="", *, reasoning="", tool_calls=(), finish_reason="stop",
             status="complete", prompt=0, completion=0, cached=0, reasoning_tokens=0,
             estimated=False):  # fmt: skip
    return {
        "content": content,
        "reasoning": reasoning,
        "tool_calls": list(tool_calls),
        "finish_reason": finish_reason,
        "status": status,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": cached,
            "reasoning_tokens": reasoning_tokens,
            "estimated": estimated,
        },
    }


async def test_1_the_plain_openai_shape(stream):
    steps = [
        stream_headers(),
        sse(chunk({"role": "assistant"})),
        sse(chunk({"content": "Hello"})),
        sse(chunk({"content": ", world."})),
        sse(chunk(finish_reason="stop")),
        usage_chunk(prompt=9, completion=3),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert stored(message) == expected("Hello, world.", prompt=9, completion=3)


async def test_2_utf8_split_inside_characters(stream):
    text = "你好，世界 🙂👍🏽 café"
    body = b"".join(sse(chunk({"content": part})) for part in [text[:4], text[4:]])
    emoji = body.index("🙂".encode())
    han = body.index("世".encode())
    steps = [
        stream_headers(),
        *split_bytes(body, han + 1, han + 2, emoji + 1, emoji + 3, emoji + 6),
        sse(chunk(finish_reason="stop")),
        usage_chunk(prompt=5, completion=9),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert stored(message) == expected(text, prompt=5, completion=9)


async def test_3_crlf_comments_multiline_data_event_and_id_fields(stream):
    first = json.dumps(chunk({"content": "Line one"}))
    multiline = json.dumps(chunk({"content": " and two"}), indent=1).replace("\n", "\r\ndata: ")
    steps = [
        stream_headers(),
        b": keep-alive\r\n\r\n",
        b": OPENROUTER PROCESSING\r\n\r\n",
        f"event: message\r\nid: 1\r\ndata: {first}\r\n\r\n".encode(),
        f"id: 2\r\ndata: {multiline}\r\n\r\n".encode(),
        ("data:" + json.dumps(chunk(finish_reason="stop")) + "\r\n\r\n").encode(),
        ("data:" + json.dumps(chunk(choices=False, usage=usage(4, 4))) + "\r\n\r\n").encode(),
        b"data: [DONE]\r\n\r\n",
    ]

    [message] = await stream(steps)

    assert stored(message) == expected("Line one and two", prompt=4, completion=4)


async def test_4_azure_content_filter_chunks_and_choices_without_delta(stream):
    filters = {"hate": {"filtered": False, "severity": "safe"}}
    steps = [
        stream_headers(),
        sse({"id": "", "choices": [], "prompt_filter_results": [
            {"prompt_index": 0, "content_filter_results": filters}]}),
        sse(chunk({"role": "assistant", "content": ""})),
        sse(chunk({"content": "Safe text."})),
        sse({"id": "x", "choices": [{"index": 0, "finish_reason": None,
                                     "content_filter_results": filters}]}),
        sse(chunk(finish_reason="stop")),
        usage_chunk(prompt=3, completion=2),
        sse("[DONE]"),
    ]  # fmt: skip

    [message] = await stream(steps)

    assert stored(message) == expected("Safe text.", prompt=3, completion=2)


async def test_5_parallel_tool_calls_with_arguments_split_anywhere(stream):
    def call(index, id=None, name=None, arguments=""):
        fragment = {"index": index, "function": {"arguments": arguments}}
        if id:
            fragment |= {"id": id, "type": "function"}
            fragment["function"]["name"] = name
        return sse(chunk({"tool_calls": [fragment]}))

    steps = [
        stream_headers(),
        sse(chunk({"role": "assistant", "content": None})),
        call(0, "call_a", "get_weather", ""),
        call(1, "call_b", "get_time", '{"tz'),
        call(0, arguments='{"city": "Sh'),
        call(1, arguments='": "Asia/Shang'),
        call(0, arguments="anghai, 上"),
        call(1, arguments='hai"}'),
        call(0, arguments='海"}'),
        sse(chunk(finish_reason="tool_calls")),
        usage_chunk(prompt=40, completion=30),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert stored(message) == expected(
        tool_calls=[
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Shanghai, 上海"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": '{"tz": "Asia/Shanghai"}'}},
        ],
        finish_reason="tool_calls",
        prompt=40,
        completion=30,
    )  # fmt: skip
    assert message.tool_call_blocks[0] == {
        "name": "get_weather",
        "arguments": '{\n  "city": "Shanghai, 上海"\n}',
    }
    html = next(e for e in stream.events if e["type"] == "message.done")["message"]["html"]
    assert (
        "Tool call: get_weather" in html and "&quot;city&quot;: &quot;Shanghai, 上海&quot;" in html
    )


def whole_call(call_id, name, arguments, **index):
    """A tool call in one fragment, as Gemini and others send each call."""
    fragment = {"id": call_id, "type": "function", **index,
                "function": {"name": name, "arguments": arguments}}  # fmt: skip
    return sse(chunk({"tool_calls": [fragment]}))


@pytest.mark.parametrize(
    "index",
    [{}, {"index": 0}],
    ids=["without-index", "all-with-index-0"],
)
async def test_tool_calls_each_with_its_own_id_are_separate_calls(stream, index):
    steps = [
        stream_headers(),
        whole_call("call_1", "get_weather", '{"city": "Paris"}', **index),
        whole_call("call_2", "get_weather", '{"city": "Rome"}', **index),
        # A continuation without an id belongs to the call begun last at its index.
        sse(chunk({"tool_calls": [{**index, "function": {"arguments": ""}}]})),
        whole_call("call_3", "get_time", '{"tz": "UTC"}', **index),
        sse(chunk(finish_reason="tool_calls")),
        usage_chunk(prompt=12, completion=24),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert [(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message.tool_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_weather", '{"city": "Rome"}'),
        ("call_3", "get_time", '{"tz": "UTC"}'),
    ]  # fmt: skip
    assert message.finish_reason == "tool_calls" and message.status == "complete"


async def test_6_n_choices_become_sibling_replies_with_usage_counted_once(stream):
    steps = [
        stream_headers(),
        sse(chunk({"role": "assistant"}, index=0)),
        sse(chunk({"role": "assistant"}, index=1)),
        sse(chunk({"content": "Red"}, index=0)),
        sse(chunk({"content": "Blue"}, index=1)),
        sse(chunk({"content": " and green, as the sun sets"}, index=0)),
        sse(chunk(finish_reason="length", index=1)),
        sse(chunk(finish_reason="stop", index=0)),
        usage_chunk(prompt=21, completion=13),
        sse("[DONE]"),
    ]

    first, second = await stream(steps, params={"n": 2})

    assert first.parent_id == second.parent_id is not None
    assert (first.content, first.finish_reason) == ("Red and green, as the sun sets", "stop")
    assert (second.content, second.finish_reason) == ("Blue", "length")
    assert first.status == second.status == "complete"
    assert first.prompt_tokens + second.prompt_tokens == 21
    assert first.completion_tokens + second.completion_tokens == 13
    assert first.completion_tokens > second.completion_tokens
    [record] = await database_sync_to_async(list)(UsageRecord.objects.all())
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (21, 13, 34)


async def test_7_reasoning_before_content_with_reasoning_and_cached_tokens(stream):
    steps = [
        stream_headers(),
        sse(chunk({"role": "assistant", "content": None, "reasoning_content": "Think"})),
        sse(chunk({"reasoning_content": "ing…", "content": None})),
        sse(chunk({"reasoning": " still."})),  # OpenRouter's name for it
        sse(chunk({"content": "Answer."})),
        sse(chunk(finish_reason="stop")),
        usage_chunk(prompt=50, completion=20, prompt_tokens_details={"cached_tokens": 32},
                    completion_tokens_details={"reasoning_tokens": 12}),
        sse("[DONE]"),
    ]  # fmt: skip

    [message] = await stream(steps)

    assert stored(message) == expected(
        "Answer.", reasoning="Thinking… still.", prompt=50, completion=20, cached=32,
        reasoning_tokens=12,
    )  # fmt: skip
    html = next(e for e in stream.events if e["type"] == "message.done")["message"]["html"]
    assert '<details class="reasoning">' in html  # collapsed above the reply


async def test_7_deepseek_cache_hit_tokens(stream):
    steps = [
        *reply(["Hi"], usage=None)[:-1],
        usage_chunk(prompt=64, completion=1, prompt_cache_hit_tokens=60,
                    prompt_cache_miss_tokens=4),
        sse("[DONE]"),
    ]  # fmt: skip

    [message] = await stream(steps)

    assert stored(message) == expected("Hi", prompt=64, completion=1, cached=60)


async def test_8_no_usage_at_all_is_estimated(stream):
    [message] = await stream(reply(["这是", "中文。", " And English text here."], usage=None))

    assert message.usage_estimated
    assert message.completion_tokens == 5 + 6  # five CJK characters, 22 others / 4
    assert message.total_tokens == message.prompt_tokens + message.completion_tokens > 11


async def test_9_usage_on_every_chunk_or_null_the_last_non_null_wins(stream):
    steps = [
        stream_headers(),
        sse(chunk({"content": "a"}, usage=usage(7, 1))),
        sse(chunk({"content": "b"}, usage=None) | {"usage": None}),
        sse(chunk({"content": "c"}, usage=usage(7, 3))),
        sse(chunk(finish_reason="stop") | {"usage": None}),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert stored(message) == expected("abc", prompt=7, completion=3)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
async def test_10_http_errors_before_any_event(stream, settings, status):
    settings.CONFAB_RETRY_BASE_MS = 1
    message_text = f"Problem {status} with key {API_KEY}"

    [message] = await stream(http_error(status, message_text))

    assert message.status == "failed" and message.content == ""
    assert f"HTTP {status}" in message.error and f"Problem {status}" in message.error
    assert API_KEY not in message.error and "[redacted]" in message.error
    assert message.usage_estimated and message.prompt_tokens > 0


async def test_10_an_error_event_mid_stream_keeps_the_partial_text(stream):
    steps = [stream_headers(), sse(chunk({"content": "Half a"})),
             sse({"error": {"message": "Upstream overloaded", "code": 529}})]  # fmt: skip

    [message] = await stream(steps)

    assert (message.status, message.content) == ("failed", "Half a")
    assert "Upstream overloaded" in message.error
    assert message.usage_estimated and message.completion_tokens == 2


def whole_body(body, content_type="application/json"):
    """A response that is not a stream: one body, with its length."""
    return [
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    ]


async def test_a_provider_that_ignores_stream_true_answers_one_completion(stream):
    completion = {
        "id": "chatcmpl-whole", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Not streamed, but whole.",
            "reasoning_content": "Thought first.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
        }}],
        "usage": usage(21, 9),
    }  # fmt: skip

    [message] = await stream(whole_body(json.dumps(completion).encode()))

    assert stored(message) == {
        **expected("Not streamed, but whole.", prompt=21, completion=9),
        "reasoning": "Thought first.",
        "finish_reason": "tool_calls",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Sign in to the proxy</body></html>", "text/html"),
        (b'{"status": "ok"}', "application/json"),
    ],
)
async def test_10_a_200_that_is_neither_a_stream_nor_a_completion(stream, body, content_type):
    [message] = await stream(whole_body(body, content_type))

    assert message.status == "failed" and "without a stream" in message.error
    assert body.decode()[:20] in message.error


async def test_10_a_connection_cut_without_done_is_interrupted(stream):
    [message] = await stream([stream_headers(), sse(chunk({"content": "Cut here"})), CLOSE])

    assert (message.status, message.content) == ("interrupted", "Cut here")
    assert "closed the connection" in message.error
    assert message.usage_estimated


async def test_retries_before_the_first_byte_then_succeeds(stream, settings):
    settings.CONFAB_RETRY_BASE_MS = 1
    attempts = []

    def flaky(body):
        attempts.append(body)
        if len(attempts) < 3:
            return http_error(503 if len(attempts) == 1 else 429, "busy")
        return reply(["Third time lucky."], usage=(5, 4))

    [message] = await stream(flaky)

    assert len(attempts) == 3
    assert stored(message) == expected("Third time lucky.", prompt=5, completion=4)


@pytest.mark.parametrize(
    ("finish_reason", "extra", "words"),
    [
        ("length", {}, "stopped: token limit reached"),
        ("model_length", {}, "stopped: token limit reached"),
        ("content_filter", {}, "stopped by the provider&#x27;s content filter"),
        ("sensitive", {}, "stopped by the provider&#x27;s content filter"),
        ("stop", {"stop_reason": "END"}, "stopped at the stop sequence “END”"),
    ],
)
async def test_11_finish_reasons_in_words(stream, finish_reason, extra, words):
    steps = [
        stream_headers(),
        sse(chunk({"content": "Some text"})),
        sse({**chunk(), "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason,
                                     **extra}]}),
        usage_chunk(prompt=2, completion=2),
        sse("[DONE]"),
    ]  # fmt: skip

    [message] = await stream(steps, params={"stop": ["END"]})

    assert (message.status, message.finish_reason) == ("complete", finish_reason)
    html = next(e for e in stream.events if e["type"] == "message.done")["message"]["html"]
    assert words in html


async def test_12_empty_and_null_deltas_and_usage_after_finish(stream):
    steps = [
        stream_headers(),
        sse(chunk({})),
        sse(chunk({"content": ""})),
        sse(chunk({"content": None})),
        sse({**chunk(), "choices": [{"index": 0, "delta": None, "finish_reason": None}]}),
        sse(chunk({"content": "Only this."})),
        sse(chunk({}, finish_reason="stop")),
        usage_chunk(prompt=1, completion=3),
        sse("[DONE]"),
    ]

    [message] = await stream(steps)

    assert stored(message) == expected("Only this.", prompt=1, completion=3)


async def test_13_a_long_reply_arrives_whole(stream):
    parts = [f"{i}{'字' if i % 7 == 0 else ''} " for i in range(20_000)]
    steps = [stream_headers(), b"".join(sse(chunk({"content": p})) for p in parts),
             sse(chunk(finish_reason="stop")), usage_chunk(prompt=3, completion=20_000),
             sse("[DONE]")]  # fmt: skip

    [message] = await stream(steps)

    assert message.content == "".join(parts)
    assert message.completion_tokens == 20_000


async def test_13_a_slow_reply_is_not_cut_while_chunks_keep_coming(stream, provider):
    provider.idle_timeout_s = 1
    await database_sync_to_async(provider.save)()

    [message] = await stream(reply(["tick ", "tock ", "tick ", "tock."], delay=0.6))

    assert (message.status, message.content) == ("complete", "tick tock tick tock.")


async def test_an_idle_gap_longer_than_the_timeout_ends_the_reply(stream, provider):
    provider.idle_timeout_s = 1
    await database_sync_to_async(provider.save)()

    [message] = await stream([stream_headers(), sse(chunk({"content": "Then "})), 1.5,
                              sse(chunk({"content": "nothing."}))])  # fmt: skip

    assert (message.status, message.content) == ("failed", "Then ")
    assert "went silent for 1 s" in message.error


async def test_sse_comments_keep_a_thinking_model_alive(stream, provider):
    """OpenRouter sends `: OPENROUTER PROCESSING` while a model thinks; others `: ping`.
    Each counts as life, for the first byte and for every gap after it."""
    provider.first_byte_timeout_s = provider.idle_timeout_s = 1
    await database_sync_to_async(provider.save)()
    pings = [step for _ in range(5) for step in (0.6, b": OPENROUTER PROCESSING\n\n")]
    more_pings = [step for _ in range(3) for step in (0.6, b": ping\r\n\r\n")]

    [message] = await stream(
        [stream_headers(), *pings, sse(chunk({"content": "After "})), *more_pings,
         sse(chunk({"content": "thinking."}, finish_reason="stop")), sse("[DONE]")]
    )  # fmt: skip

    assert (message.status, message.content) == ("complete", "After thinking.")


async def test_a_provider_that_never_starts_answering_times_out(stream, provider):
    provider.first_byte_timeout_s = 1
    await database_sync_to_async(provider.save)()

    [message] = await stream([1.5, *reply(["late"])])

    assert message.status == "failed"
    assert "did not start answering within 1 s" in message.error


async def test_14_a_json_reply_is_shown_formatted(stream):
    [message] = await stream(
        reply(['{"name":', '"Ada","langs":["en","zh"]}']),
        params={"response_format": {"type": "json_object"}},
    )

    assert message.content == '{"name":"Ada","langs":["en","zh"]}'
    html = message.html
    assert 'class="language-json"' in html and '"Ada"' in html
    assert '\n<span class="hl-w">  </span><span class="hl-nt">"name"' in html  # indented
    assert "does not parse" not in message.html


async def test_14_a_json_reply_that_does_not_parse_says_so(stream):
    [message] = await stream(
        reply(['{"name": "Ada"']), params={"response_format": {"type": "json_object"}}
    )

    assert "asked for as JSON but does not parse" in message.html


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("3", 3.0), ("0.5", 0.5), ("120", 10.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_a_429_waits_as_long_as_retry_after_says_within_reason(settings, retry_after, wait):
    from conversations.upstream import ChatStream

    settings.CONFAB_RETRY_BASE_MS = 500
    delay = ChatStream._backoff(0, retry_after)

    if wait is None:  # a date we do not parse: exponential backoff with jitter instead
        assert 0.5 <= delay <= 0.75
    else:
        assert delay == wait
