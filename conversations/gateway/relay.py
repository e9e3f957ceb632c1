"""One gateway request: the provider's stream read into a queue for the caller's response,
and settled once however it ends (the end, a failure, the caller going away).

The reader runs in a task of its own, like the chat's runner: the caller's response takes
events from the queue, and when the caller goes away the reader is stopped, which closes
the provider's connection, and the request is settled as cancelled.
"""

import asyncio
import contextvars
import json
import logging
import time

from channels.db import database_sync_to_async

from conversations.generation.settle import Outcome, Reply, settle
from conversations.models import Message
from conversations.upstream import ChatStream, Completion
from conversations.upstream.events import (
    DELTAS,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)

logger = logging.getLogger(__name__)

# The end of the stream, on the queue.
END = object()

# The gateway requests this process is serving: admission counts them with the chat's.
relays = set()


class Relay:
    def __init__(self, provider, body, request, model_name):
        self.stream = ChatStream(provider, body)
        self.request = request
        self.model_name = model_name  # as the caller named it
        self.completion = Completion()
        # Unbounded, so the reader never waits for a slow caller (as the chat's runner never
        # waits for a slow socket); the request's output bound bounds it.
        self.queue = asyncio.Queue()
        self.started = time.monotonic()
        self.ttft_ms = None
        self.task = None
        self.reader = None
        self.usage = None  # once settled: reported, else estimated

    def start(self):
        relays.add(self)
        # A context of its own, as the chat's runner has: the view that starts it may run
        # under Django's sync middleware, whose request thread asgiref would otherwise send
        # this task's database calls to, long after that thread has moved on.
        self.task = asyncio.create_task(
            self._run(), name=f"relay-{self.request.id}", context=contextvars.Context()
        )
        self.task.add_done_callback(self._ended)
        return self

    def _ended(self, task):
        relays.discard(self)
        if not task.cancelled() and task.exception() is not None:
            logger.error("relay %s failed", self.request.id, exc_info=task.exception())

    def stop(self):
        """Stop reading, which closes the provider's connection: the caller went away.
        The request is settled all the same."""
        if self.reader is not None:
            self.reader.cancel()

    async def events(self):
        """The stream's events as they come, then END."""
        while (event := await self.queue.get()) is not END:
            yield event

    async def _run(self):
        self.reader = asyncio.create_task(self._read())
        status = Message.Status.COMPLETE
        try:
            await self.reader
        except asyncio.CancelledError:
            status = Message.Status.CANCELLED
        if failure := self.completion.failure:
            status = Message.Status.INTERRUPTED if failure.code == "cut" else Message.Status.FAILED
        outcome = Outcome(
            status=status,
            replies=tuple(Reply.of(c) for _, c in sorted(self.completion.choices.items())),
            error=str(failure) if failure else "",
            usage=self.completion.usage,
            ttft_ms=self.ttft_ms,
            duration_ms=self._elapsed_ms(),
            failure=failure,
        )
        self.usage = (await database_sync_to_async(settle)(self.request, outcome)).usage
        self.queue.put_nowait(END)

    async def _read(self):
        async for event in self.stream:
            self.completion.add(event)
            if self.ttft_ms is None and isinstance(event, DELTAS):
                self.ttft_ms = self._elapsed_ms()
            self.queue.put_nowait(event)

    def _elapsed_ms(self):
        return int((time.monotonic() - self.started) * 1000)


class Chunks:
    """The stream's events as OpenAI's `chat.completion.chunk` objects: well formed
    whatever the provider sent (each choice's first delta names the role, tool calls carry
    their index, usage comes last and only when asked for)."""

    def __init__(self, relay, include_usage):
        self.relay = relay
        self.include_usage = include_usage
        self.id = f"chatcmpl-{relay.request.id.hex}"
        self.created = int(relay.request.asked_at.timestamp())
        self.spoke = set()  # choices whose role was sent

    def of(self, event):
        """The chunk (a dict) an event becomes, or None (usage waits for the end)."""
        kind = type(event)
        if kind is TextDelta:
            return self._delta(event.choice, {"content": event.text})
        if kind is ReasoningDelta:
            return self._delta(event.choice, {"reasoning_content": event.text})
        if kind is ToolCallDelta:
            call = {"index": event.call}
            if event.id:
                call |= {"id": event.id, "type": "function"}
            function = {"arguments": event.arguments}
            if event.name:
                function["name"] = event.name
            return self._delta(event.choice, {"tool_calls": [{**call, "function": function}]})
        if kind is Finished:
            return self._delta(event.choice, {}, finish_reason=event.reason)
        return None  # the usage comes last (usage()), a failure ends the stream (views)

    def usage(self):
        """The last chunk, with the usage, when the caller asked for it."""
        if not self.include_usage or self.relay.usage is None:
            return None
        return self._chunk([], usage=usage_of(self.relay.usage))

    def _delta(self, index, delta, finish_reason=None):
        if index not in self.spoke:
            self.spoke.add(index)
            delta = {"role": "assistant", **delta}
        return self._chunk([{"index": index, "delta": delta, "finish_reason": finish_reason}])

    def _chunk(self, choices, **extra):
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.relay.model_name,
            "choices": choices,
            **extra,
        }


def sse(data):
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def usage_of(usage):
    """A Usage as the API's `usage` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_of(relay):
    """A finished relay as one `chat.completion` object."""
    choices = []
    for index, choice in sorted(relay.completion.choices.items()):
        message = {"role": "assistant", "content": choice.content or None}
        if choice.reasoning:
            message["reasoning_content"] = choice.reasoning
        if choice.tool_calls:
            message["tool_calls"] = choice.tool_calls
        choices.append(
            {"index": index, "message": message, "finish_reason": choice.finish_reason or None}
        )
    usage = relay.usage
    return {
        "id": f"chatcmpl-{relay.request.id.hex}",
        "object": "chat.completion",
        "created": int(relay.request.asked_at.timestamp()),
        "model": relay.model_name,
        "choices": choices,
        "usage": usage_of(usage) if usage else None,
    }
