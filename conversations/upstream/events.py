"""What a provider's stream says, as a few typed events: the one vocabulary of every reader
of a reply (the runner and titles; next the gateway and the agent loop).

The client (conversations.upstream.client) turns each provider's dialect into these events,
so that nobody downstream reads a chunk: text, reasoning and tool-call deltas, each naming
its choice (a request with n > 1 interleaves several); a choice's finish; the usage the
provider reported (possibly several times: the last report wins); and a failure, always the
last event of a stream that did not end well. `Completion` folds them.
"""

from dataclasses import dataclass, field

from conversations.usage import Usage


class UpstreamError(Exception):
    """A request that did not end well. `str(error)` is safe to show: it never holds the key.

    `code` says what kind of failure: connection, timeout, http_error, provider_error,
    bad_chunk, not_a_stream, or cut (the connection closed before the reply was finished).
    `reached` is false when the request never reached the provider (no connection could be
    made: nothing was sent, so nothing was used); then `reason` says why in a word
    (client.REASONS) and `host` where.
    """

    def __init__(
        self, message, *, status=None, code="upstream_error", reached=True, reason="", host=""
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.reached = reached
        self.reason = reason
        self.host = host


@dataclass(slots=True, frozen=True)
class TextDelta:
    choice: int
    text: str


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    choice: int
    text: str


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A piece of one tool call. `call` numbers the calls of a choice from 0, whatever the
    provider's own `index` said; `id` and `name` come once, `arguments` in pieces."""

    choice: int
    call: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True, frozen=True)
class Finished:
    choice: int
    reason: str
    # The stop sequence that ended it, when the provider says which (vLLM, SGLang).
    stop_sequence: str = ""


@dataclass(slots=True, frozen=True)
class UsageReported:
    usage: Usage


@dataclass(slots=True, frozen=True)
class Failed:
    error: UpstreamError


DELTAS = (TextDelta, ReasoningDelta, ToolCallDelta)


class Choice:
    """One choice folded from its events.

    The text is kept as the parts it arrived in, so that a reader can tell what is new
    since it last looked by counting parts (the runner's frames do).
    """

    __slots__ = (
        "content_parts",
        "finish_reason",
        "reasoning_parts",
        "stop_sequence",
        "tool_call_updates",
        "tool_calls",
    )

    def __init__(self):
        self.content_parts = []
        self.reasoning_parts = []
        self.tool_calls = []
        self.tool_call_updates = 0  # how many tool-call deltas have arrived
        self.finish_reason = ""
        self.stop_sequence = ""

    @property
    def content(self):
        return "".join(self.content_parts)

    @property
    def reasoning(self):
        return "".join(self.reasoning_parts)

    @property
    def started(self):
        return bool(self.content_parts or self.reasoning_parts or self.tool_calls)

    def add_tool_call(self, delta):
        while len(self.tool_calls) <= delta.call:
            self.tool_calls.append(
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
        call = self.tool_calls[delta.call]
        if delta.id and not call["id"]:
            call["id"] = delta.id
        if delta.name and not call["function"]["name"]:
            call["function"]["name"] = delta.name
        call["function"]["arguments"] += delta.arguments
        self.tool_call_updates += 1


@dataclass
class Completion:
    """A whole response folded from its events: each choice, the usage last reported (None
    when the provider reported none), and the failure that ended it, if one did."""

    choices: dict = field(default_factory=dict)
    usage: Usage | None = None
    failure: UpstreamError | None = None

    def choice(self, index=0):
        choice = self.choices.get(index)
        if choice is None:
            choice = self.choices[index] = Choice()
        return choice

    def add(self, event):
        kind = type(event)
        if kind is TextDelta:
            self.choice(event.choice).content_parts.append(event.text)
        elif kind is ReasoningDelta:
            self.choice(event.choice).reasoning_parts.append(event.text)
        elif kind is ToolCallDelta:
            self.choice(event.choice).add_tool_call(event)
        elif kind is Finished:
            choice = self.choice(event.choice)
            choice.finish_reason = event.reason
            choice.stop_sequence = event.stop_sequence or choice.stop_sequence
        elif kind is UsageReported:
            self.usage = event.usage
        elif kind is Failed:
            self.failure = event.error
