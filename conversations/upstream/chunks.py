"""Chat Completions chunks, in each provider's dialect, read into events (upstream.events).

`ChunkReader` reads the chunks of one response, in order: a streamed `chat.completion.chunk`
or, from a provider that ignored `stream: true`, one whole `chat.completion`. What it cannot
make sense of is skipped, field by field; a chunk that is not a JSON object, or that carries
an error, raises UpstreamError (the client's to report). docs/providers.md lists the dialects
and the tests that hold each one.
"""

import json

from conversations.upstream.events import (
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    UsageReported,
)
from conversations.usage import Usage

# Choice indexes beyond this are a provider's bug, not n > 1 (n is at most 8).
MAX_CHOICES = 128
# How much of a provider's error, or of what it sent instead of a chunk, a user is shown.
MAX_ERROR_CHARS = 500
MAX_QUOTED_CHARS = 300
# Finish reasons that say the provider failed mid-answer: the reason is stored as sent, and
# the reply fails with these words (docs/providers.md).
FAILING_FINISH_REASONS = {
    "network_error": "The provider's inference broke off mid-answer (network_error).",
    "insufficient_system_resource": (
        "The provider ran out of capacity mid-answer (insufficient_system_resource)."
    ),
    "abort": "The provider aborted the reply (abort).",
    "error": "The provider failed mid-answer.",
}
# The types of `reasoning_details` parts that carry readable text, and the field holding it.
REASONING_PARTS = {"reasoning.text": "text", "reasoning.summary": "summary"}


class _CallNumbers:
    """Numbers one choice's tool calls from 0, in the order they begin.

    OpenAI gives each call an `index` and its `id` on the first fragment only. Others send
    no index, or index 0 for every call, each with its own id: a new id is a new call, and a
    fragment without one continues the last call begun at its index.
    """

    __slots__ = ("by_id", "by_index", "count", "said")

    def __init__(self):
        self.by_id = {}
        self.by_index = {}
        self.count = 0
        self.said = set()  # (call, "id" or "name"): given once already

    def once(self, number, kind, value):
        """`value` the first time a call gives its id or name; "" when it repeats it
        (SGLang repeats both on every fragment)."""
        if not value or (number, kind) in self.said:
            return ""
        self.said.add((number, kind))
        return value

    def number(self, index, call_id):
        if call_id:
            number = self.by_id.get(call_id)
            if number is None:
                number = self.by_id[call_id] = self._next()
            self.by_index[index] = number
            return number
        number = self.by_index.get(index)
        if number is None:
            number = self.by_index[index] = self._next()
        return number

    def _next(self):
        self.count += 1
        return self.count - 1


class ChunkReader:
    """Reads the chunks of one response into events."""

    def __init__(self, redact):
        self.redact = redact
        self.calls = {}  # choice -> _CallNumbers
        self.said = set()  # choices that sent text, reasoning or tool calls
        self.finished = set()  # choices that reported a finish reason
        self.surrogates = {}  # (kind, choice): a high surrogate awaiting its pair
        self.escaped = False  # the chunk being read has escapes that may be surrogates

    def read(self, payload, event_name=b""):
        """The events of one SSE event's data (bytes); a `Failed` event ends them when the
        chunk reports an error, after what the chunk said before it."""
        # Decoded leniently, as a text stream would be: a stray byte is not worth a reply.
        text = payload.decode("utf-8", "replace")
        try:
            chunk = json.loads(text)
        except ValueError:
            raise UpstreamError(
                "The provider sent something that is not JSON: "
                + self.redact(text)[:MAX_QUOTED_CHARS],
                code="bad_chunk",
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a malformed chunk.", code="bad_chunk")
        # Only JSON's \\u escapes make surrogates (most of them make none): a cheap look.
        self.escaped = b"\\ud" in payload or b"\\uD" in payload
        events = []
        choices = chunk.get("choices")
        for raw in choices if isinstance(choices, list) else ():
            if isinstance(raw, dict):
                self._choice(raw, events)
        # Usage at the top level (OpenAI), inside the choice (Moonshot, read there) or in
        # x_groq (Groq).
        for usage in (chunk.get("usage"), _field(chunk.get("x_groq"), "usage")):
            if isinstance(usage, dict) and any(_counts(usage)):
                events.append(UsageReported(Usage.from_api(usage)))
        # An `error` member (OpenAI, OpenRouter), a chunk that is an error (vLLM's
        # {"object": "error"}) or an SSE event named error.
        if chunk.get("error") or chunk.get("object") == "error" or event_name == b"error":
            message = f"The provider reported an error: {error_message(chunk, self.redact)}"
            events.append(Failed(UpstreamError(message, code="provider_error")))
        return _failure_last(events)

    def read_completion(self, body):
        """The events of a whole `chat.completion` (a provider that does not stream)."""
        try:
            completion = json.loads(body)
        except ValueError:
            completion = None
        if not isinstance(completion, dict) or not (
            isinstance(completion.get("choices"), list) or completion.get("error")
        ):
            raise UpstreamError(
                "The provider answered without a stream, and not with a chat completion: "
                + self.redact(body.decode("utf-8", "replace"))[:MAX_QUOTED_CHARS],
                code="not_a_stream",
            )
        return self.read(body)

    def _choice(self, raw, events):
        index = raw.get("index")
        index = index if type(index) is int and 0 <= index < MAX_CHOICES else 0
        delta = raw.get("delta")
        if not isinstance(delta, dict):
            # A whole completion's choice has its text in `message`; in a stream (MiniMax's
            # last frame) it repeats what the deltas said, so only a choice that said nothing
            # yet takes it.
            message = raw.get("message")
            delta = message if isinstance(message, dict) and index not in self.said else {}
        reasoning = self._text("reasoning", index, _reasoning(delta))
        if reasoning:
            self.said.add(index)
            events.append(ReasoningDelta(index, reasoning))
        content = delta.get("content")
        if isinstance(content, str):
            if content := self._text("content", index, content):
                self.said.add(index)
                events.append(TextDelta(index, content))
        elif isinstance(content, list):  # typed parts (Mistral's Magistral)
            self._content_parts(index, content, events)
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            self.said.add(index)
            self._tool_calls(index, calls, events)
        if isinstance(usage := raw.get("usage"), dict) and any(_counts(usage)):
            events.append(UsageReported(Usage.from_api(usage)))
        finish_reason = raw.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            # vLLM names the stop string in stop_reason, SGLang in matched_stop.
            stop = raw.get("stop_reason") or raw.get("matched_stop")
            if self.escaped:
                finish_reason, stop = (
                    _utf8(finish_reason),
                    _utf8(stop if isinstance(stop, str) else ""),
                )
            self.finished.add(index)
            for kind, event in (("reasoning", ReasoningDelta), ("content", TextDelta)):
                if self.surrogates.pop((kind, index), None):  # never paired: not a character
                    events.append(event(index, "\ufffd"))
            events.append(Finished(index, finish_reason, stop))
            if failing := FAILING_FINISH_REASONS.get(finish_reason):
                events.append(Failed(UpstreamError(failing, code="provider_error")))

    def _content_parts(self, index, parts, events):
        """Content as a list of typed parts: text is content, thinking is reasoning."""
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                if text := self._text("content", index, part["text"]):
                    self.said.add(index)
                    events.append(TextDelta(index, text))
            elif part.get("type") == "thinking":
                if text := self._text("reasoning", index, _thinking(part.get("thinking"))):
                    self.said.add(index)
                    events.append(ReasoningDelta(index, text))

    def _text(self, kind, index, text):
        """`text` as UTF-8 can carry it. A provider that escapes characters beyond the BMP
        may split one's surrogate pair across two chunks: the first half waits for the
        second; a surrogate that has no pair becomes U+FFFD. The rest of the text stays."""
        if not (self.escaped or self.surrogates) or not text:
            return text
        text = self.surrogates.pop((kind, index), "") + text
        if "\ud800" <= text[-1] <= "\udbff":
            self.surrogates[(kind, index)] = text[-1]
            text = text[:-1]
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    def _tool_calls(self, choice, calls, events):
        numbers = self.calls.get(choice)
        if numbers is None:
            numbers = self.calls[choice] = _CallNumbers()
        for call in calls:
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            call_id = call.get("id") if isinstance(call.get("id"), str) else ""
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            name = function.get("name") if isinstance(function.get("name"), str) else ""
            arguments = function.get("arguments")
            if isinstance(arguments, dict | list):  # an object where a JSON string belongs
                arguments = json.dumps(arguments, ensure_ascii=False)
            elif not isinstance(arguments, str):
                arguments = ""
            number = numbers.number(index if type(index) is int else None, call_id)
            arguments = self._text(("arguments", number), choice, arguments)
            call_id, name = numbers.once(number, "id", call_id), numbers.once(number, "name", name)
            call_id, name = (_utf8(call_id), _utf8(name)) if self.escaped else (call_id, name)
            events.append(ToolCallDelta(choice, number, call_id, name, arguments))


def _failure_last(events):
    """A chunk's events with one failure at most, last: the provider's own words (its
    `error`) rather than what its finish reason says, and after the usage it reported."""
    failures = [event for event in events if type(event) is Failed]
    if not failures:
        return events
    return [event for event in events if type(event) is not Failed] + failures[-1:]


def _reasoning(delta):
    """What a delta marks as reasoning: `reasoning_content` (DeepSeek, Qwen), `reasoning`
    (OpenRouter, which repeats it in `reasoning_details`), else the text of
    `reasoning_details` parts (MiniMax, OpenRouter without `reasoning`)."""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str):
        return reasoning
    details = delta.get("reasoning_details")
    if not isinstance(details, list):
        return ""
    return "".join(
        part[field]
        for part in details
        if isinstance(part, dict)
        and (field := REASONING_PARTS.get(part.get("type")))
        and isinstance(part.get(field), str)
    )


def _utf8(text):
    """A short string (a name, an id) with any lone surrogate made U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _thinking(thinking):
    """The text of a thinking part: a string, or a list of text parts."""
    if isinstance(thinking, str):
        return thinking
    parts = thinking if isinstance(thinking, list) else ()
    texts = (part.get("text") for part in parts if isinstance(part, dict))
    return "".join(text for text in texts if isinstance(text, str))


def _field(value, name):
    return value.get(name) if isinstance(value, dict) else None


def _counts(usage):
    """The token counts of a usage object: all zero in a placeholder (MiniMax's
    `{"total_tokens": 0}` on every chunk), which reports nothing."""
    return [usage.get(name) for name in Usage.COUNTS[:3] if usage.get(name)]


def error_message(body, redact=str):
    """The human part of a provider's error body, whatever its shape: its secrets redacted
    before it is cut short, so no piece of one is left at the cut."""
    data = body
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except ValueError:
            return _utf8(redact(body.strip()))[:MAX_ERROR_CHARS] or "no details given"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            error = error.get("message") or error.get("code") or error
        data = error
    return _utf8(redact(str(data)))[:MAX_ERROR_CHARS]
