"""Property-based: however the network splits a stream, the reply is the same; garbage
never raises: the stream ends with a `Failed` event that says what went wrong."""

import asyncio
import json
import uuid
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations import upstream
from conversations.models import Provider
from tests.fake_upstream import chunk, sse, stream_headers

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
deltas = st.lists(
    st.one_of(
        st.builds(lambda t: {"content": t}, text),
        st.builds(lambda t: {"reasoning_content": t}, text),
        st.builds(
            lambda i, t: {"tool_calls": [{"index": i, "function": {"arguments": t}}]},
            st.integers(0, 1),
            text,
        ),
        st.just({}),
        st.just({"content": None}),
    ),
    min_size=1,
    max_size=25,
)
line_ending = st.sampled_from(["\n", "\r\n"])


def transcript(parts, newline):
    body = "".join(
        f"data: {json.dumps(chunk(delta, index=index))}{newline}{newline}" for index, delta in parts
    )
    done = f"data: {json.dumps(chunk(finish_reason='stop'))}{newline}{newline}data: [DONE]"
    return (body + done + newline + newline).encode()


def split_at(data, cuts):
    edges = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in pairwise(edges) if b > a]


def stream_of(server, steps):
    """Stream `steps` from the fake upstream through a ChatStream, folded to its end."""
    name = f"p-{uuid.uuid4().hex}"
    server.script(name, steps)
    provider = Provider(name="p", base_url=server.url, api_key="sk-property")

    async def consume():
        completion = upstream.Completion()
        try:
            async for event in upstream.ChatStream(provider, {"model": name, "messages": []}):
                completion.add(event)
        finally:
            await upstream.close_clients()
        return completion

    return asyncio.run(consume())


def read(server, steps):
    """The folded choices of a stream of `steps`."""
    return {
        i: (c.content, c.reasoning, c.tool_calls, c.finish_reason)
        for i, c in stream_of(server, steps).choices.items()
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.tuples(st.integers(0, 2), deltas.map(lambda d: d[0])), min_size=1,
                   max_size=30),
    newline=line_ending,
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)  # fmt: skip
def test_a_reply_does_not_depend_on_how_the_network_splits_it(
    fake_upstream_server, parts, newline, cuts
):
    data = transcript(parts, newline)

    whole = read(fake_upstream_server, [stream_headers(), data])
    split = read(fake_upstream_server, [stream_headers(), *split_at(data, cuts)])

    assert split == whole
    for index in {i for i, _ in parts}:
        content = "".join(d.get("content") or "" for i, d in parts if i == index)
        assert whole.get(index, ("",))[0] == content  # a choice that said nothing is absent


@settings(max_examples=80, deadline=None)
@given(
    garbage=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    prefix=st.sampled_from([b"", b"data: ", b"data: {", b"data: [", b'data: {"choices": ']),
)
def test_garbage_ends_in_a_failure_never_an_exception(fake_upstream_server, garbage, prefix):
    completion = stream_of(fake_upstream_server, [stream_headers(), prefix + garbage, b"\n\n"])

    assert completion.failure is None or str(completion.failure)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
chunk_keys = st.sampled_from(
    [
        "choices",
        "usage",
        "delta",
        "index",
        "content",
        "tool_calls",
        "function",
        "arguments",
        "finish_reason",
        "reasoning",
        "error",
    ]
)
shaped = st.recursive(
    json_values,
    lambda inner: st.dictionaries(chunk_keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None)
@given(chunks=st.lists(shaped, min_size=1, max_size=4))
def test_json_of_the_wrong_shape_ends_in_a_failure_never_an_exception(fake_upstream_server, chunks):
    steps = [stream_headers(), *(sse(c if c is not None else "null") for c in chunks)]

    completion = stream_of(fake_upstream_server, steps)

    assert completion.failure is None or str(completion.failure)


def test_garbage_after_a_valid_start_keeps_what_came_before(fake_upstream_server):
    steps = [stream_headers(), sse(chunk({"content": "kept"})), b"data: {oops\n\n"]

    completion = stream_of(fake_upstream_server, steps)

    assert completion.failure.code == "bad_chunk"
    assert completion.choice(0).content == "kept"


def test_usage_of_the_wrong_shape_is_read_as_far_as_it_makes_sense(fake_upstream_server):
    odd = {"prompt_tokens": "12", "completion_tokens": 5, "total_tokens": True,
           "prompt_tokens_details": [1], "completion_tokens_details": "x"}  # fmt: skip
    steps = [stream_headers(), sse(chunk({"content": "ok"}, finish_reason="stop")),
             sse(chunk(choices=False, usage=odd)), sse("[DONE]")]  # fmt: skip
    usage = stream_of(fake_upstream_server, steps).usage

    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 5, 5)
