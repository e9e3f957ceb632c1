"""Chat Completions chunks, in each provider's dialect, read into events (upstream.events).

`ChunkReader` reads the chunks of one response, in order: a streamed `chat.completion.chunk`
or, from a provider that ignored `stream: true`, one whole `chat.completion`. What it cannot
make sense of is skipped, field by field; a chunk that is not a JSON object, or that carries
an error, raises UpstreamError (the client's to report). docs/providers.md lists the dialects
and the tests that hold each one.
"""

import json

from conversations.upstream.events import (
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


class _CallNumbers:
    """Numbers one choice's tool calls from 0, in the order they begin.

    OpenAI gives each call an `index` and its `id` on the first fragment only. Others send
    no index, or index 0 for every call, each with its own id: a new id is a new call, and a
    fragment without one continues the last call begun at its index.
    """

    __slots__ = ("by_id", "by_index", "count")

    def __init__(self):
        self.by_id = {}
        self.by_index = {}
        self.count = 0

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
        self.finished = set()  # choices that reported a finish reason

    def read(self, payload, event_name=b""):
        """The events of one SSE event's data (bytes)."""
        # Decoded leniently, as a text stream would be: a stray byte is not worth a reply.
        text = payload.decode("utf-8", "replace")
        try:
            chunk = json.loads(text)
        except ValueError:
            raise UpstreamError(
                self.redact(f"The provider sent something that is not JSON: {text[:200]}"),
                code="bad_chunk",
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a malformed chunk.", code="bad_chunk")
        if chunk.get("error") or event_name == b"error":
            raise UpstreamError(
                self.redact(f"The provider reported an error: {error_message(chunk)}"),
                code="provider_error",
            )
        events = []
        choices = chunk.get("choices")
        for raw in choices if isinstance(choices, list) else ():
            if isinstance(raw, dict):
                self._choice(raw, raw.get("delta"), events)
        if isinstance(usage := chunk.get("usage"), dict):
            events.append(UsageReported(Usage.from_api(usage)))
        return events

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
                self.redact(
                    "The provider answered without a stream, and not with a chat completion: "
                    f"{body[:300].decode('utf-8', 'replace')}"
                ),
                code="not_a_stream",
            )
        return self.read(body)

    def _choice(self, raw, delta, events):
        index = raw.get("index")
        index = index if type(index) is int and 0 <= index < MAX_CHOICES else 0
        if not isinstance(delta, dict):
            # A whole completion's choice has its text in `message`.
            delta = raw.get("message") if isinstance(raw.get("message"), dict) else {}
        # DeepSeek and Qwen call it reasoning_content, OpenRouter reasoning.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(index, reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(index, content))
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            self._tool_calls(index, calls, events)
        finish_reason = raw.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            # vLLM names the stop string in stop_reason, SGLang in matched_stop.
            stop = raw.get("stop_reason") or raw.get("matched_stop")
            self.finished.add(index)
            events.append(Finished(index, finish_reason, stop if isinstance(stop, str) else ""))

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
            events.append(ToolCallDelta(choice, number, call_id, name, arguments))


def error_message(body):
    """The human part of a provider's error body, whatever its shape."""
    data = body
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except ValueError:
            return body.strip()[:500] or "no details given"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or error)[:500]
        return str(error)[:500]
    return str(data)[:500]
