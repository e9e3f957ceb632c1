"""The upstream client: the only code that talks HTTP to a provider.

It builds the Chat Completions request, streams it with httpx, splits the Server-Sent Events
(upstream.sse), reads each chunk's dialect into typed events (upstream.chunks) and turns
every failure into one `UpstreamError` whose message is safe to show to the user.

httpx runs over the httpx-aiohttp transport: the httpx API (timeouts, limits, errors) with
aiohttp's C HTTP parser underneath, which reads a streamed chunk for less than half the CPU
of httpx's own pure-Python stack (docs/performance.md, "Reading the upstream").
"""

import asyncio
import hashlib
import hmac
import json
import logging
import random
import socket
import ssl
import weakref
from urllib.parse import urlsplit

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import HttpxAiohttpClient

from conversations.upstream.chunks import MAX_QUOTED_CHARS, ChunkReader, error_message
from conversations.upstream.events import Failed, UpstreamError
from conversations.upstream.sse import EventTooLarge, SSESplitter

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 502, 503, 504}
JSON_BODY = {"Content-Type": "application/json"}
MAX_RETRIES = 2
MAX_RETRY_AFTER_S = 10.0
MAX_ERROR_BODY = 64 * 1024
MAX_COMPLETION_BODY = 16 * 1024 * 1024
# How long the end of a body that follows [DONE] is waited for, so the connection is reused.
DRAIN_S = 0.1
LIST_MODELS_TIMEOUT_S = 15
MIN_SECRET_CHARS = 8
# The transport maps aiohttp's errors to httpx's, but for a malformed response, which it
# leaves as aiohttp's own.
TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError)


def pseudonymous_user(user_id):
    """The `user` field: stable per user, meaningless outside this server."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"user:{user_id}".encode(), hashlib.sha256)
    return "confab-" + digest.hexdigest()[:32]


def build_body(model, messages, params, user_id):
    """The request: the model's extra fields and defaults, overridden by `params`, with a
    bound on its output (the model's, else the site's, when `params` set none lower)."""
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
    # Always a bound on the output: quotas reserve it before the request is sent. A model
    # configured for max_completion_tokens (OpenAI's reasoning models) keeps that name.
    limit = model.max_output_tokens or settings.CONFAB_DEFAULT_MAX_OUTPUT_TOKENS
    name = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
    body[name] = min(body.get(name) or limit, limit)
    return body


# One pooled client per provider per process. Its connections are bound to the event loop
# that made them, so the pool is kept per loop.
_clients = weakref.WeakKeyDictionary()


def _headers(provider):
    headers = {**provider.extra_headers}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    return headers


def client_for(provider):
    pool = _clients.setdefault(asyncio.get_running_loop(), {})
    # A provider changed in admin gets a new client; the key is in the pool key only hashed.
    settings_seen = json.dumps([provider.base_url, provider.api_key, provider.extra_headers])
    key = (provider.pk, hashlib.sha256(settings_seen.encode()).hexdigest())
    if key not in pool:
        pool[key] = HttpxAiohttpClient(
            headers=_headers(provider),
            # Connecting and sending are bounded here; waiting for the answer is bounded by
            # ChatStream, which needs two bounds (the first byte, then each gap) where httpx
            # has one read timeout.
            timeout=httpx.Timeout(settings.CONFAB_CONNECT_TIMEOUT_S, read=None, pool=None),
            # A reply holds its connection as long as it streams: the process's own cap on
            # replies (CONFAB_MAX_GENERATIONS_PER_PROCESS) is the limit, not the pool.
            limits=httpx.Limits(max_connections=0, max_keepalive_connections=None),
            trust_env=True,  # HTTP(S)_PROXY and NO_PROXY
        )
    return pool[key]


async def close_clients():
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


class ChatStream:
    """One streamed Chat Completions request.

    Iterate it for its events (upstream.events) as they arrive. It never raises for a
    request that failed: its last event is then `Failed`, after whatever came before.
    """

    def __init__(self, provider, body):
        self.provider = provider
        self.body = body
        self.first_byte_timeout = (
            provider.first_byte_timeout_s or settings.CONFAB_FIRST_BYTE_TIMEOUT_S
        )
        self.idle_timeout = provider.idle_timeout_s or settings.CONFAB_IDLE_TIMEOUT_S
        self.reader = ChunkReader(self._redact)

    async def __aiter__(self):
        try:
            async for event in self._events():
                yield event
        except UpstreamError as error:
            yield Failed(error)

    async def _events(self):
        loop = asyncio.get_running_loop()
        # The first bytes of the answer are waited for up to first_byte_timeout in all,
        # retries included; then each gap between reads up to idle_timeout. Any bytes count,
        # SSE comments too: a provider that pings while its model thinks keeps the reply.
        first_bytes_by = loop.time() + self.first_byte_timeout
        try:
            async with asyncio.timeout_at(first_bytes_by):
                response = await self._open()
        except TimeoutError:
            raise self._silence(started=False) from None
        try:
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" in content_type:
                async for event in self._read_stream(response, first_bytes_by):
                    yield event
            elif "json" in content_type:
                async for event in self._read_completion(response, first_bytes_by):
                    yield event
            else:
                body = await self._read_bounded(response, MAX_ERROR_BODY)
                raise UpstreamError(
                    "The provider answered without a stream "
                    f"({content_type or 'no content type'}): "
                    + self._redact(body)[:MAX_QUOTED_CHARS],
                    status=response.status_code,
                    code="not_a_stream",
                )
        except (*TRANSPORT_ERRORS, EventTooLarge) as error:
            raise UpstreamError(
                self._redact(f"The connection to the provider failed: {_describe(error)}"),
                code="connection",
            ) from None
        finally:
            await response.aclose()

    async def _read_stream(self, response, first_bytes_by):
        """The events of a streamed response, until [DONE] or the end of the body."""
        loop = asyncio.get_running_loop()
        chunks = response.aiter_bytes()
        splitter = SSESplitter()
        deadline = first_bytes_by
        started = False
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await anext(chunks, None)
            except TimeoutError:
                raise self._silence(started) from None
            if data is None:
                break
            started = True
            deadline = loop.time() + self.idle_timeout
            events, ended = self._events_of(splitter.feed(data))
            for event in events:
                yield event
            if ended:
                await self._drain(chunks)
                return
        if not self.reader.finished:
            raise UpstreamError(
                "The provider closed the connection before the reply was finished.",
                code="cut",
            )

    async def _read_completion(self, response, first_bytes_by):
        """A provider that ignored `stream: true` and answered one chat.completion; or one
        that streams under the wrong content type (Foundry Local), read as the stream."""
        try:
            async with asyncio.timeout_at(first_bytes_by):
                body = await self._read_bounded(response, MAX_COMPLETION_BODY, text=False)
        except TimeoutError:
            raise self._silence(started=False) from None
        if body.lstrip().startswith((b"data:", b":", b"event:")):
            events, _ = self._events_of(SSESplitter().feed(body + b"\n\n"))
        else:
            events = self.reader.read_completion(body)
        for event in events:
            yield event

    def _events_of(self, blocks):
        """The events of some SSE blocks, and whether the stream ended among them: at
        [DONE], or at a failure the provider reported (nothing after it counts)."""
        events = []
        for name, payload in blocks:
            if payload == b"[DONE]":
                return events, True
            try:
                events += self.reader.read(payload, name)
            except UpstreamError as error:  # a chunk that cannot be read: after the others
                events.append(Failed(error))
            if events and type(events[-1]) is Failed:
                return events, True
        return events, False

    def _silence(self, started):
        if started:
            message = f"The provider went silent for {self.idle_timeout} s mid-reply."
        else:
            message = f"The provider did not start answering within {self.first_byte_timeout} s."
        return UpstreamError(message, code="timeout")

    @staticmethod
    async def _drain(chunks):
        """The body's end, if it follows [DONE] at once, so the connection can be reused."""
        try:
            async with asyncio.timeout(DRAIN_S):
                async for _ in chunks:
                    pass
        except (TimeoutError, *TRANSPORT_ERRORS):
            pass  # closed unread: the connection is not reused

    async def _open(self):
        """Send the request; retry before the first byte only, and only what may pass."""
        client = client_for(self.provider)
        url = self.provider.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()
        for attempt in range(MAX_RETRIES + 1):
            request = client.build_request("POST", url, content=body, headers=JSON_BODY)
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if attempt == MAX_RETRIES:
                    raise unreachable(error, url, settings.CONFAB_CONNECT_TIMEOUT_S) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            except TRANSPORT_ERRORS as error:
                raise UpstreamError(
                    self._redact(f"The connection to the provider failed: {_describe(error)}"),
                    code="connection",
                ) from None
            if response.status_code < 400:
                return response
            text = await self._read_bounded(response, MAX_ERROR_BODY)
            if response.status_code in RETRY_STATUSES and attempt < MAX_RETRIES:
                await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
                continue
            raise UpstreamError(
                f"The provider refused the request (HTTP {response.status_code}): "
                + error_message(text, self._redact),
                status=response.status_code,
                code="http_error",
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _backoff(attempt, retry_after=None):
        if retry_after:
            try:
                return min(float(retry_after), MAX_RETRY_AFTER_S)
            except ValueError:
                pass
        base = settings.CONFAB_RETRY_BASE_MS / 1000
        return base * 2**attempt + random.uniform(0, base / 2)

    @staticmethod
    async def _read_bounded(response, limit, *, text=True):
        """At most `limit` bytes of the body; the response is closed afterwards."""
        chunks, size = [], 0
        try:
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        finally:
            await response.aclose()
        body = b"".join(chunks)
        return body.decode("utf-8", errors="replace") if text else body

    def _redact(self, text):
        return redactor(self.provider)(text)


def _describe(error):
    """An httpx error in a few words: its message, else its kind."""
    return str(error) or type(error).__name__


# Why a provider could not be reached, in words: the reason names an administrator can act
# on, where a library's class name (ClientConnectorError) says nothing. The translated
# sentences are Provider.status_text's and Message.error_text's.
REASONS = {
    "refused": "the connection was refused (is the server running, on that port?)",
    "dns": "the host name could not be found (DNS)",
    "certificate": "its TLS certificate could not be verified",
    "tls": "the TLS handshake failed",
    "timeout": "no answer within {timeout} s",
    "network": "the network connection failed",
}


def host_of(url):
    """The host (and port) of a URL, without any credentials it holds."""
    return urlsplit(url).netloc.rpartition("@")[2] or url


def unreachable(error, url, timeout_s):
    """An error that kept a request from reaching the provider at `url`, as an
    UpstreamError that names the host and the reason in words."""
    reason = _reason(error, url)
    host = host_of(url)
    words = REASONS[reason].format(timeout=timeout_s)
    return UpstreamError(
        f"Could not reach {host}: {words}.",
        code="connection",
        reached=False,
        reason=reason,
        host=host,
    )


def _reason(error, url):
    """The cause of a failure to connect to `url`, from the chain of errors under it: httpx
    and aiohttp wrap the operating system's (a refused connection, a failed name lookup, TLS)."""
    chain, todo = [], [error]
    while todo:
        cause = todo.pop(0)
        if cause is None or any(cause is seen for seen in chain):
            continue
        chain.append(cause)
        todo += [cause.__cause__, cause.__context__, getattr(cause, "os_error", None)]
        todo.append(getattr(cause, "certificate_error", None))
    for cause in chain:
        if isinstance(cause, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return "dns"
        certificate = ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError
        if isinstance(cause, certificate):
            return "certificate"
        if isinstance(cause, ssl.SSLError | aiohttp.ClientSSLError):
            return "tls"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        if isinstance(cause, ConnectionResetError) and urlsplit(url).scheme == "https":
            # Cut off once connected, before the request was sent: in the handshake, as a
            # server that does not speak TLS on that port hangs up on one.
            return "tls"
    # aiohttp's connect errors reach httpx as ConnectTimeout: a timeout only without one.
    if any(isinstance(cause, aiohttp.ClientConnectorError) for cause in chain):
        return "network"
    if any(isinstance(cause, TimeoutError | httpx.TimeoutException) for cause in chain):
        return "timeout"
    return "network"


async def list_models(provider):
    """The model ids that `GET {base}/models` lists.

    A client of its own, not the pool: this runs from admin actions and commands, on
    event loops that may not outlive the call.
    """
    url = provider.base_url.rstrip("/") + "/models"
    host = host_of(url)
    try:
        async with HttpxAiohttpClient(
            headers=_headers(provider), timeout=LIST_MODELS_TIMEOUT_S, trust_env=True
        ) as client:
            response = await client.get(url)
            status, text = response.status_code, response.text
    except (*TRANSPORT_ERRORS, TimeoutError) as error:
        raise unreachable(error, url, LIST_MODELS_TIMEOUT_S) from None
    if status >= 400:
        message = error_message(text, redactor(provider))
        raise UpstreamError(
            f"{host} refused to list models (HTTP {status}): {message}",
            status=status,
            code="http_error",
            reason="http",
            host=host,
        )
    try:
        return [item["id"] for item in json.loads(text)["data"] if isinstance(item.get("id"), str)]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UpstreamError(
            f"{host} answered, but not with a model list in the OpenAI format.",
            code="not_a_list",
            reason="format",
            host=host,
        ) from None


def redactor(provider):
    """A function that removes from a text every secret a request to `provider` carries:
    its key, and the values of its extra headers (Azure's `api-key`, a relay's token)."""
    secrets = [provider.api_key, *provider.extra_headers.values()]
    # Longest first, so a secret that contains another goes whole; short values (a version
    # number, a flag) are no secrets, and replacing them would garble the text.
    secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(text):
        for secret in secrets:
            text = text.replace(secret, "[redacted]")
        return text

    return redact


EMBEDDINGS_TIMEOUT_S = 60


async def embeddings(provider, model, texts):
    """`POST {base}/embeddings` for `texts`: their vectors in order, and the usage the
    provider reported (None when it reports none). A 429 raises UpstreamError with
    `status` 429 and `retry_after` (seconds, from its header), for the caller to wait."""
    url = provider.base_url.rstrip("/") + "/embeddings"
    body = {"model": model, "input": list(texts)}
    try:
        response = await client_for(provider).post(url, json=body, timeout=EMBEDDINGS_TIMEOUT_S)
        status, text = response.status_code, response.text
    except (*TRANSPORT_ERRORS, TimeoutError) as error:
        raise UpstreamError(f"Could not reach the provider: {_describe(error)}") from None
    if status >= 400:
        error = UpstreamError(
            f"The provider refused the embeddings (HTTP {status}): "
            + error_message(text, redactor(provider)),
            status=status,
        )
        error.retry_after = _seconds(response.headers.get("retry-after"))
        raise error
    try:
        data = json.loads(text)
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d["index"])]
    except (ValueError, KeyError, TypeError):
        raise UpstreamError("The provider's embeddings are not in the OpenAI format.") from None
    if len(vectors) != len(texts):
        raise UpstreamError("The provider returned fewer embeddings than were asked for.")
    return vectors, data.get("usage")


def _seconds(value):
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None
