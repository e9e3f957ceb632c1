"""The upstream client: the only code that talks HTTP to a provider.

It builds the Chat Completions request, streams it with aiohttp, splits the Server-Sent
Events (conversations.sse), folds chunks into choices and usage, and turns every failure
into one `UpstreamError` whose message is safe to show to the user.

aiohttp rather than httpx (DESIGN.md's choice): its C HTTP parser reads a chunk for less
than half the CPU of httpx's pure-Python stack, the largest single cost of relaying a reply
(docs/performance.md, "Reading the upstream").
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import weakref
from dataclasses import dataclass, field

import aiohttp
from django.conf import settings

from conversations.sse import EventTooLarge, SSESplitter
from conversations.usage import Usage

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 502, 503, 504}
JSON_BODY = {"Content-Type": "application/json"}
MAX_RETRIES = 2
MAX_ERROR_BODY = 64 * 1024


class UpstreamError(Exception):
    """A request that did not end well. `str(error)` is safe to show: it never holds the key."""

    def __init__(self, message, *, status=None, code="upstream_error"):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Choice:
    """One choice of a reply, folded from its deltas."""

    index: int = 0
    content_parts: list = field(default_factory=list)
    reasoning_parts: list = field(default_factory=list)
    tool_calls: dict = field(default_factory=dict)
    tool_call_fragments: int = 0
    finish_reason: str = ""
    stop_sequence: str = ""

    @property
    def content(self):
        return "".join(self.content_parts)

    @property
    def reasoning(self):
        return "".join(self.reasoning_parts)

    def tool_call_list(self):
        return [self.tool_calls[i] for i in sorted(self.tool_calls)]


@dataclass
class Delta:
    """What one chunk added to one choice: the unit the runner relays to the browser."""

    index: int
    content: str = ""
    reasoning: str = ""
    tool_calls: list = field(default_factory=list)


def pseudonymous_user(user_id):
    """The `user` field: stable per user, meaningless outside this server."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"user:{user_id}".encode(), hashlib.sha256)
    return "confab-" + digest.hexdigest()[:32]


def build_body(model, messages, params, user_id):
    """The request: the model's extra fields and defaults, overridden by `params`."""
    body = {
        **model.extra_body,
        **model.default_params,
        **params,
        "model": model.upstream_id,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": pseudonymous_user(user_id),
    }
    if limit := model.max_output_tokens:
        body["max_tokens"] = min(body.get("max_tokens") or limit, limit)
    return body


# One pooled session per provider per process. Sessions are bound to the event loop that
# made them, so the pool is kept per loop.
_clients = weakref.WeakKeyDictionary()


def _headers(provider):
    headers = {**provider.extra_headers}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    return headers


def client_for(provider):
    pool = _clients.setdefault(asyncio.get_running_loop(), {})
    # A provider changed in admin gets a new session; the key is in the pool key only hashed.
    settings_seen = json.dumps([provider.base_url, provider.api_key, provider.extra_headers])
    key = (provider.pk, hashlib.sha256(settings_seen.encode()).hexdigest())
    if key not in pool:
        pool[key] = aiohttp.ClientSession(
            headers=_headers(provider),
            # No total: a reply takes as long as it takes; ChatStream bounds the first byte
            # and every gap between chunks itself.
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=settings.CONFAB_CONNECT_TIMEOUT_S,
                sock_connect=settings.CONFAB_CONNECT_TIMEOUT_S,
            ),
            connector=aiohttp.TCPConnector(limit=0),
            trust_env=True,  # HTTP(S)_PROXY and NO_PROXY, as httpx honoured them
        )
    return pool[key]


async def close_clients():
    for session in _clients.pop(asyncio.get_running_loop(), {}).values():
        await session.close()


class ChatStream:
    """One streamed Chat Completions request.

    Iterate it for `Delta`s as they arrive; afterwards `choices` holds each choice folded
    and `usage` the last usage the provider reported (None when it reported none).
    """

    def __init__(self, provider, body):
        self.provider = provider
        self.body = body
        self.choices = {}
        self.usage = None
        self.done = False
        self.started = False  # an event arrived: a timeout now is a silence, not no answer
        self.first_byte_timeout = (
            provider.first_byte_timeout_s or settings.CONFAB_FIRST_BYTE_TIMEOUT_S
        )
        self.idle_timeout = provider.idle_timeout_s or settings.CONFAB_IDLE_TIMEOUT_S

    def choice(self, index=0):
        return self.choices.setdefault(index, Choice(index))

    async def __aiter__(self):
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.first_byte_timeout) as deadline:
                response = await self._open()
                try:
                    async with contextlib.aclosing(self._read(response, deadline, loop)) as deltas:
                        async for delta in deltas:
                            yield delta
                finally:
                    response.release()
        except TimeoutError:
            if self.started:
                message = f"The provider went silent for {self.idle_timeout} s mid-reply."
            else:
                message = (
                    f"The provider did not start answering within {self.first_byte_timeout} s."
                )
            raise UpstreamError(message, code="timeout") from None
        except (aiohttp.ClientError, EventTooLarge) as error:
            raise UpstreamError(
                self._redact(f"The connection to the provider failed: {error}"),
                code="connection",
            ) from None
        if not self.done and not any(c.finish_reason for c in self.choices.values()):
            raise UpstreamError(
                "The provider closed the connection before the reply was finished.",
                code="cut",
            )

    async def _read(self, response, deadline, loop):
        """The deltas of the response's events, until [DONE] or the end of the body."""
        splitter = SSESplitter()
        async for data in response.content.iter_any():
            for event, payload in splitter.feed(data):
                # Each event pushes the deadline on: the idle gap, not the total.
                self.started = True
                deadline.reschedule(loop.time() + self.idle_timeout)
                if payload == b"[DONE]":
                    self.done = True
                    await self._drain(response)
                    return
                for delta in self._fold(event, payload):
                    yield delta

    @staticmethod
    async def _drain(response):
        """The body's end, if it follows [DONE] at once, so the connection can be reused."""
        try:
            async with asyncio.timeout(0.1):
                while await response.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError):
            pass  # released unread: aiohttp closes the connection instead

    async def _open(self):
        """Send the request; retry before the first byte only, and only what may pass."""
        session = client_for(self.provider)
        url = self.provider.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = await session.post(url, data=body, headers=JSON_BODY)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                if attempt == MAX_RETRIES:
                    raise UpstreamError(
                        self._redact(f"Could not connect to the provider: {error}"),
                        code="connection",
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.status < 400:
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" not in content_type:
                    body = await self._read_bounded(response)
                    raise UpstreamError(
                        self._redact(
                            "The provider answered without a stream "
                            f"({content_type or 'no content type'}): {body[:300]}"
                        ),
                        status=response.status,
                        code="not_a_stream",
                    )
                return response
            text = await self._read_bounded(response)
            if response.status in RETRY_STATUSES and attempt < MAX_RETRIES:
                await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
                continue
            raise UpstreamError(
                self._redact(
                    f"The provider refused the request (HTTP {response.status}): "
                    f"{error_message(text)}"
                ),
                status=response.status,
                code="http_error",
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _backoff(attempt, retry_after=None):
        if retry_after:
            try:
                return min(float(retry_after), 10.0)
            except ValueError:
                pass
        base = settings.CONFAB_RETRY_BASE_MS / 1000
        return base * 2**attempt + random.uniform(0, base / 2)

    @staticmethod
    async def _read_bounded(response):
        chunks, size = [], 0
        try:
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ERROR_BODY:
                    break
        finally:
            response.release()
        return b"".join(chunks).decode("utf-8", errors="replace")

    def _fold(self, event, payload):
        # Decoded leniently, as a text stream would be: a stray byte is not worth a reply.
        data = payload.decode("utf-8", "replace")
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError(
                self._redact(f"The provider sent something that is not JSON: {data[:200]}"),
                code="bad_chunk",
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a malformed chunk.", code="bad_chunk")
        if chunk.get("error") or event == b"error":
            raise UpstreamError(
                self._redact(f"The provider reported an error: {error_message(chunk)}"),
                code="provider_error",
            )
        if isinstance(usage := chunk.get("usage"), dict):
            self.usage = Usage.from_api(usage)
        choices = chunk.get("choices")
        return [
            delta
            for raw in (choices if isinstance(choices, list) else ())
            if isinstance(raw, dict) and (delta := self._fold_choice(raw))
        ]

    def _fold_choice(self, raw):
        index = raw.get("index")
        index = index if type(index) is int and 0 <= index < 128 else 0
        choice = self.choice(index)
        delta = raw.get("delta") if isinstance(raw.get("delta"), dict) else {}
        out = Delta(index)
        if isinstance(content := delta.get("content"), str) and content:
            choice.content_parts.append(content)
            out.content = content
        # DeepSeek and Qwen call it reasoning_content, OpenRouter reasoning.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            choice.reasoning_parts.append(reasoning)
            out.reasoning = reasoning
        fragments = delta.get("tool_calls")
        for fragment in fragments if isinstance(fragments, list) else ():
            if isinstance(fragment, dict):
                out.tool_calls.append(_fold_tool_call(choice, fragment))
        if isinstance(finish_reason := raw.get("finish_reason"), str) and finish_reason:
            choice.finish_reason = finish_reason
        # vLLM names the stop string in stop_reason, SGLang in matched_stop.
        stop = raw.get("stop_reason") or raw.get("matched_stop")
        if isinstance(stop, str) and stop:
            choice.stop_sequence = stop
        return out if out.content or out.reasoning or out.tool_calls else None

    def _redact(self, text):
        return _redactor(self.provider.api_key)(text)


def _fold_tool_call(choice, fragment):
    """Add one fragment to its call: id and name come once, arguments in pieces."""
    index = fragment.get("index")
    index = index if type(index) is int and 0 <= index < 128 else 0
    choice.tool_call_fragments += 1
    call = choice.tool_calls.setdefault(
        index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if isinstance(fragment.get("id"), str) and fragment["id"]:
        call["id"] = fragment["id"]
    function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
    if isinstance(function.get("name"), str) and function["name"] and not call["function"]["name"]:
        call["function"]["name"] = function["name"]
    if isinstance(function.get("arguments"), str):
        call["function"]["arguments"] += function["arguments"]
    return {"index": index, **fragment}


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


async def list_models(provider):
    """The model ids that `GET {base}/models` lists.

    A client of its own, not the pool: this runs from admin actions and commands, on
    event loops that may not outlive the call.
    """
    url = provider.base_url.rstrip("/") + "/models"
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        async with (
            aiohttp.ClientSession(headers=_headers(provider), timeout=timeout, trust_env=True) as s,
            s.get(url) as response,
        ):
            status, text = response.status, await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise UpstreamError(f"Could not reach the provider: {type(error).__name__}") from None
    redact = _redactor(provider.api_key)
    if status >= 400:
        raise UpstreamError(
            redact(f"The provider refused to list models (HTTP {status}): {error_message(text)}"),
            status=status,
        )
    try:
        return [item["id"] for item in json.loads(text)["data"] if isinstance(item.get("id"), str)]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UpstreamError("The provider's model list is not in the OpenAI format.") from None


def _redactor(key):
    return (lambda text: text.replace(key, "[redacted]")) if key else (lambda text: text)
