"""The event stream splitter: the same events however the network cuts the bytes."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversations.upstream import sse
from conversations.upstream.sse import EventTooLarge, SSESplitter


def by_the_specification(stream):
    """The events of a whole stream, read line by line as the HTML specification says."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # what follows the last line end is not a line yet
    events, data, event = [], [], ""
    for line in lines:
        if not line:
            if data:
                events.append((event.encode(), "\n".join(data).encode()))
            data, event = [], ""
        elif not line.startswith(":"):
            name, colon, value = line.partition(":")
            value = value[1:] if colon and value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    return events


def split(stream, cuts):
    splitter, events, start = SSESplitter(), [], 0
    for cut in [*sorted(cuts), len(stream)]:
        events += splitter.feed(stream[start:cut])
        start = cut
    return events


def test_it_reads_a_chat_completions_stream():
    stream = (
        b'data: {"choices":[{"delta":{"content":"\xe4\xbd\xa0\xe5\xa5\xbd"}}]}\n\n'
        b": keep-alive\n\n"
        b'event: error\ndata: {"error":{"message":"overloaded"}}\n\n'
        b"data: [DONE]\n\n"
    )

    assert split(stream, [3, 30, 31, 80]) == [
        (b"", '{"choices":[{"delta":{"content":"你好"}}]}'.encode()),
        (b"error", b'{"error":{"message":"overloaded"}}'),
        (b"", b"[DONE]"),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_works_even_cut_in_two(newline):
    stream = b"\xef\xbb\xbfdata: a" + newline + b"data: b" + newline * 2 + b"data: c" + newline * 2

    for cut in range(len(stream) + 1):
        assert split(stream, [cut]) == [(b"", b"a\nb"), (b"", b"c")]


def test_an_empty_read_between_a_cr_and_its_lf_changes_nothing():
    splitter = SSESplitter()

    events = [*splitter.feed(b"data: a\r"), *splitter.feed(b""), *splitter.feed(b"\nid: 1\r\n")]

    assert events == []  # one line ending, not two: no blank line, no event yet
    assert list(splitter.feed(b"\r\n")) == [(b"", b"a")]


def test_an_unfinished_event_waits_for_its_end():
    splitter = SSESplitter()

    assert splitter.feed(b"data: half") == ()
    assert splitter.feed(b" of it\n") == ()
    assert splitter.feed(b"\n") == [(b"", b"half of it")]


def test_it_refuses_an_event_without_end(monkeypatch):
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    splitter = SSESplitter()
    splitter.feed(b"data: " + b"x" * 900)

    with pytest.raises(EventTooLarge):
        splitter.feed(b"x" * 200)


LINES = st.sampled_from(
    [b"data: x", b"data:y", b"data", b"data: ", b"event: error", b"event:", b": note",
     b"id: 7", b"retry: 10", b"", b"data: \xe4\xbd\xa0", b"data: [DONE]", b"other: z"]
)  # fmt: skip
ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])


@given(
    st.lists(st.tuples(LINES, ENDINGS), max_size=30),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_it_finds_what_the_specification_finds_wherever_the_reads_end(lines, cuts):
    stream = b"".join(line + ending for line, ending in lines)

    assert split(stream, [c for c in cuts if c <= len(stream)]) == by_the_specification(stream)
