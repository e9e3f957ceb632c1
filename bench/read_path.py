"""What reading the upstream costs, per event, for a few ways of reading it.

    .venv/bin/python -m bench.read_path                  # the default run, about 4 minutes
    .venv/bin/python -m bench.read_path --quick          # N = 20, 100-chunk replies, 1 run each
    .venv/bin/python -m bench.read_path --candidates A,T,F --runs 5 --clients 100
    .venv/bin/python -m bench.read_path --loop uvloop    # the same on uvloop (if installed)
    .venv/bin/python -m bench.read_path --selfcheck-only # correctness checks only, a few s

A micro-benchmark of the part of the relay that reads the provider: no Django database, no
websockets, only N concurrent Chat Completions streams read and folded into text. The fake
upstream (bench.upstream) runs in its own process pinned to the load core; each measured
run is a fresh process pinned to the server's core, on the event loop daphne serves Confab
with (plain asyncio; `--loop uvloop` for comparison), that opens --clients streams spread
over --ramp seconds (half a reply by default, like bench.relay), reads them to `[DONE]` and
reports its own CPU time (process_time, cross-checked with /proc ticks) per SSE event the
upstream sent (per stream: a role chunk, --tokens content chunks, a finish chunk, a usage
chunk and `[DONE]`) and per content chunk. Each run's streams are checked against
bench.text: the folded text, finish reason, usage and delta count of every stream must be
exactly what was sent, or the candidate is marked wrong.

Candidates. All but A fold each event with the same few lines (`Fold`: `json.loads`, the
content, the finish reason, the usage), so that they differ only in how they read; A is
Confab's own reading, events and all. The default run measures them all, three
interleaved rounds (each round in another order), then A and F once at --scale-clients:

  A   Confab: `conversations.upstream.ChatStream`, iterated for its typed events, each
      folded with `Completion.add`, as the runner does: httpx over the httpx-aiohttp
      transport, `aiter_bytes()`, SSESplitter, ChunkReader, a deadline per read
  T   httpx over the httpx-aiohttp transport (the client ChatStream uses, made the same
      way) read raw: `aiter_raw()`, SSESplitter, Fold; no Confab code but the splitter
  S   T's client, the events split by httpx-sse (`aconnect_sse`, `aiter_sse`) instead of
      SSESplitter: whether our splitter is worth having (httpx-sse is not a dependency:
      `pip install httpx-sse` to measure it; without it the default run skips S)
  D   aiohttp directly, the floor-ish reference of a real client: `ClientSession.post`,
      `content.iter_any()`, SSESplitter, Fold (what ChatStream read with before 956f7a5)
  H   plain httpx (its own HTTP stack: httpcore, h11, anyio): `aiter_lines()`, Fold
  F   floor, not a product candidate: asyncio.open_connection, HTTP/1.1 chunked decoded by
      hand, SSESplitter, Fold, no timeouts

T, S, D and H read under one deadline pushed on by each read (or event), and map their
failures to the codes ChatStream's `Failed` events carry (connection, timeout, cut), so the
comparison with A is of like with like. bench/results/read_path*.json without a commit in
the name were taken while ChatStream read with httpx + httpx-sse, with other candidates
(their E read with aiohttp directly), on uvloop.

Before the runs a self-check (also in a fresh process) fuzzes SSESplitter against a plain
reading of the SSE specification (`reference_events`) and checks the error mapping (refused,
cut mid-reply, idle timeout) and TLS of every candidate but F against small local servers.
A micro-benchmark prices, per event and without any network: json.loads, Fold,
ChunkReader.read (json.loads included) with and without Completion.add, SSESplitter, and
httpx-sse's line and event decoders.

Everything listens on 127.0.0.1; every wait is bounded. Results: a Markdown table on stdout
and the JSON in --output (bench/results/read_path-<commit>.json, --quick:
read_path_quick.json; --selfcheck-only writes its JSON only to an --output given, never
over a measurement).
"""

import argparse
import asyncio
import codecs
import collections
import contextlib
import hashlib
import importlib.util
import json
import os
import random
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.text import MODEL, prompt, reply_tokens
from conversations.upstream.sse import SSESplitter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "sk-bench-0000-not-a-secret"
WARM_UP_TOKENS = 5
# SSE events per stream besides the content chunks: role, finish, usage, [DONE].
FRAMING_EVENTS = 4
FLOOR = "F"
DESCRIPTIONS = {
    "A": "Confab: ChatStream events + Completion.add (httpx over httpx-aiohttp)",
    "T": "httpx over httpx-aiohttp: aiter_raw + SSESplitter + Fold",
    "S": "httpx over httpx-aiohttp: httpx-sse aiter_sse + Fold",
    "D": "aiohttp directly: iter_any + SSESplitter + Fold",
    "H": "plain httpx: aiter_lines + Fold",
    "F": "floor: asyncio streams, hand-decoded chunked, SSESplitter + Fold",
}
DEFAULT_CANDIDATES = "A,T,S,D,H,F"
# Every candidate but the floor keeps deadlines and maps errors: the self-check checks them.
CHECKED = ("A", "T", "S", "D", "H")


def have_httpx_sse():
    return importlib.util.find_spec("httpx_sse") is not None


# Server-Sent Events, split on bytes


def reference_events(stream_bytes):
    """The same events by a line-by-line reading of the specification (for the self-check)."""
    text = stream_bytes.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # what follows the last line end is not a line (yet)
    events, data, event = [], [], ""
    for line in lines:
        if not line:
            if data:
                events.append((event or "message", "\n".join(data)))
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return events


# What a stream gave, whoever read it


@dataclass
class Got:
    text: str = ""
    deltas: int = 0  # content deltas
    done: bool = False  # [DONE] read (A: ended without a failure)
    finish_reason: str = ""
    completion_tokens: int | None = None
    extra: bool = False  # another choice, reasoning or a tool call
    failure: str | None = None  # the error code of a stream that failed
    failure_text: str = ""


class Fold:
    """What a minimal client keeps of a stream: per event `json.loads`, the content, the
    finish reason and the usage. No Confab code."""

    __slots__ = ("completion_tokens", "done", "extra", "finish_reason", "parts")

    def __init__(self):
        self.parts = []
        self.finish_reason = ""
        self.completion_tokens = None
        self.extra = False
        self.done = False

    def add(self, data):
        chunk = json.loads(data)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                self.parts.append(content)
            if choice.get("index") or delta.get("reasoning_content") or delta.get("tool_calls"):
                self.extra = True
            if reason := choice.get("finish_reason"):
                self.finish_reason = reason
        if usage := chunk.get("usage"):
            self.completion_tokens = usage.get("completion_tokens")

    def got(self, failure=None, failure_text=""):
        return Got(
            text="".join(self.parts),
            deltas=len(self.parts),
            done=self.done,
            finish_reason=self.finish_reason,
            completion_tokens=self.completion_tokens,
            extra=self.extra,
            failure=failure,
            failure_text=failure_text,
        )


class ReadFailed(Exception):
    def __init__(self, code, text=""):
        super().__init__(text)
        self.code = code


# The readers


async def read_confab(provider, body):
    """A: ChatStream's events, folded as the runner folds them."""
    from conversations.upstream import ChatStream, Completion
    from conversations.upstream.events import TextDelta

    stream = ChatStream(provider, body)
    completion = Completion()
    add = completion.add
    deltas = 0
    async with contextlib.aclosing(stream.__aiter__()) as events:
        async for event in events:
            add(event)
            if type(event) is TextDelta:
                deltas += 1
    choice = completion.choices.get(0)
    failure = completion.failure
    return Got(
        text=choice.content if choice else "",
        deltas=deltas,
        done=failure is None,
        finish_reason=choice.finish_reason if choice else "",
        completion_tokens=completion.usage.completion_tokens if completion.usage else None,
        extra=len(completion.choices) != 1
        or bool(choice and (choice.reasoning_parts or choice.tool_calls)),
        failure=failure.code if failure else None,
        failure_text=str(failure)[:120] if failure else "",
    )


async def read_transport_raw(reader, body, fold):
    """T: httpx over the httpx-aiohttp transport, the raw bytes split here."""
    loop = asyncio.get_running_loop()
    idle = reader.provider.idle_timeout_s
    async with (
        asyncio.timeout(reader.provider.first_byte_timeout_s) as deadline,
        reader.client.stream("POST", reader.url, json=body) as response,
    ):
        response.raise_for_status()
        splitter = SSESplitter()
        async for data in response.aiter_raw():
            deadline.reschedule(loop.time() + idle)
            for _event, payload in splitter.feed(data):
                if payload == b"[DONE]":
                    fold.done = True
                    return
                fold.add(payload)


async def read_httpx_sse(reader, body, fold):
    """S: T's client, the events split by httpx-sse."""
    from httpx_sse import aconnect_sse

    loop = asyncio.get_running_loop()
    idle = reader.provider.idle_timeout_s
    async with (
        asyncio.timeout(reader.provider.first_byte_timeout_s) as deadline,
        aconnect_sse(reader.client, "POST", reader.url, json=body) as source,
    ):
        source.response.raise_for_status()
        async with contextlib.aclosing(source.aiter_sse()) as events:
            async for event in events:
                deadline.reschedule(loop.time() + idle)
                if event.data == "[DONE]":
                    fold.done = True
                    return
                fold.add(event.data)


async def read_aiohttp(reader, body, fold):
    """D: aiohttp's own client, the bytes as they arrive split here."""
    loop = asyncio.get_running_loop()
    idle = reader.provider.idle_timeout_s
    async with (
        asyncio.timeout(reader.provider.first_byte_timeout_s) as deadline,
        reader.client.post(reader.url, json=body) as response,
    ):
        response.raise_for_status()
        splitter = SSESplitter()
        async for data in response.content.iter_any():
            deadline.reschedule(loop.time() + idle)
            for _event, payload in splitter.feed(data):
                if payload == b"[DONE]":
                    fold.done = True
                    return
                fold.add(payload)


async def read_httpx_lines(reader, body, fold):
    """H: plain httpx, as a minimal client reads a stream (bench.clients.ask_upstream)."""
    loop = asyncio.get_running_loop()
    idle = reader.provider.idle_timeout_s
    async with (
        asyncio.timeout(reader.provider.first_byte_timeout_s) as deadline,
        reader.client.stream("POST", reader.url, json=body) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            deadline.reschedule(loop.time() + idle)
            data = line[5:].strip()
            if data == "[DONE]":
                fold.done = True
                return
            fold.add(data)


class _Dechunker:
    """HTTP/1.1 chunked transfer coding, by hand (the floor F only)."""

    __slots__ = ("buffer", "done", "need")

    def __init__(self):
        self.buffer = b""
        self.need = 0  # >0: bytes of chunk data left; -1: the CRLF after them; 0: a size line
        self.done = False

    def feed(self, data):
        buffer = self.buffer + data if self.buffer else data
        out = []
        position = 0
        size = len(buffer)
        while position < size:
            if self.need > 0:
                piece = buffer[position : position + self.need]
                out.append(piece)
                position += len(piece)
                self.need -= len(piece)
                if not self.need:
                    self.need = -1
            elif self.need == -1:
                if size - position < 2:
                    break
                position += 2
                self.need = 0
            else:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    break
                length = int(buffer[position:end].split(b";", 1)[0], 16)
                position = end + 2
                if not length:
                    self.done = True
                    break
                self.need = length
        self.buffer = buffer[position:]
        return out


async def read_floor(reader, body, fold):
    """F: the same request over asyncio streams, the body decoded and split here."""
    stream_reader, writer = await asyncio.open_connection(reader.host, reader.port)
    try:
        payload = json.dumps(body).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (reader.host.encode(), reader.port, API_KEY.encode(), len(payload), payload)
        )
        head = await stream_reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(f"unexpected answer {head[:100]!r}")
        dechunker = _Dechunker()
        splitter = SSESplitter()
        while not dechunker.done:
            data = await stream_reader.read(65536)
            if not data:
                break
            for piece in dechunker.feed(data):
                for _event, payload in splitter.feed(piece):
                    if payload == b"[DONE]":
                        fold.done = True
                        return
                    fold.add(payload)
    finally:
        writer.close()


READERS = {
    "T": read_transport_raw,
    "S": read_httpx_sse,
    "D": read_aiohttp,
    "H": read_httpx_lines,
    "F": read_floor,
}


# The clients, made as ChatStream's own pool makes its client


def provider_headers(provider):
    return {"Authorization": f"Bearer {provider.api_key}"}


def transport_client(provider, verify=True):
    """T's and S's client: conversations.upstream.client.client_for's, `verify` aside."""
    import httpx
    from django.conf import settings
    from httpx_aiohttp import HttpxAiohttpClient

    return HttpxAiohttpClient(
        headers=provider_headers(provider),
        timeout=httpx.Timeout(settings.CONFAB_CONNECT_TIMEOUT_S, read=None, pool=None),
        limits=httpx.Limits(max_connections=0, max_keepalive_connections=None),
        trust_env=True,
        verify=verify,
    )


def httpx_client(provider, verify=True):
    """H's client: plain httpx, no read timeout (the deadline is the reader's)."""
    import httpx
    from django.conf import settings

    return httpx.AsyncClient(
        headers=provider_headers(provider),
        timeout=httpx.Timeout(
            connect=settings.CONFAB_CONNECT_TIMEOUT_S, read=None, write=30, pool=30
        ),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=50),
        verify=verify,
    )


def aiohttp_session(provider, ssl_context=None):
    """D's client: an aiohttp session with no connection limit."""
    import aiohttp

    return aiohttp.ClientSession(
        headers=provider_headers(provider),
        connector=aiohttp.TCPConnector(limit=0, ssl=ssl_context or True),
    )


def trust_for_confab(ssl_context):
    """ChatStream's pool, trusting `ssl_context` (the TLS self-check's certificate): the
    client_for it calls is replaced until `restore()`."""
    from conversations.upstream import client as upstream_client

    saved = upstream_client.client_for
    pool = {}

    def client_for(provider):
        if provider.pk not in pool:
            pool[provider.pk] = transport_client(provider, ssl_context)
        return pool[provider.pk]

    async def restore():
        upstream_client.client_for = saved
        for client in pool.values():
            await client.aclose()

    upstream_client.client_for = client_for
    return restore


class Provider:
    """What ChatStream reads of a Provider row."""

    def __init__(self, base_url):
        self.pk = 1
        self.base_url = base_url
        self.api_key = API_KEY
        self.extra_headers = {}
        self.first_byte_timeout_s = 60
        self.idle_timeout_s = 60


def request_body(key, tokens):
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt(key)}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": tokens,
        "user": "confab-" + "0" * 32,
    }


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()


class Reader:
    """Opens one stream of a candidate and reads it to the end."""

    def __init__(self, name, base_url, ssl_context=None):
        if name not in DESCRIPTIONS:
            raise ValueError(f"unknown candidate {name}")
        self.name = name
        self.provider = Provider(base_url)
        self.url = base_url.rstrip("/") + "/chat/completions"
        host_port = base_url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.client = None
        self.restore = None
        verify = ssl_context or True
        if name in ("T", "S"):
            self.client = transport_client(self.provider, verify)
        elif name == "H":
            self.client = httpx_client(self.provider, verify)
        elif name == "D":
            self.client = aiohttp_session(self.provider, ssl_context)
        elif name == "A" and ssl_context is not None:
            self.restore = trust_for_confab(ssl_context)

    async def read(self, key, tokens):
        body = request_body(key, tokens)
        if self.name == "A":
            return await read_confab(self.provider, body)
        fold = Fold()
        try:
            await self._read(fold, body)
        except ReadFailed as failed:
            return fold.got(failed.code, str(failed)[:120])
        return fold.got()

    async def _read(self, fold, body):
        """A candidate's read, its failures as ChatStream's codes."""
        import aiohttp
        import httpx

        if self.name == FLOOR:
            return await read_floor(self, body, fold)
        try:
            await READERS[self.name](self, body, fold)
        except TimeoutError:
            raise ReadFailed("timeout", "no event within the deadline") from None
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as error:
            raise ReadFailed("connection", f"{type(error).__name__}: {error}") from None
        if not fold.done:
            raise ReadFailed("cut", "the upstream closed before [DONE]")

    async def close(self):
        from conversations import upstream

        await upstream.close_clients()
        if self.restore is not None:
            await self.restore()
        if self.client is not None:
            if self.name == "D":
                await self.client.close()
            else:
                await self.client.aclose()


def verdict(key, tokens, got, error):
    """None when the stream is exactly what the upstream sent, else what differs."""
    if error:
        return error
    if got.failure:
        return f"failed ({got.failure}): {got.failure_text}"
    expected = "".join(reply_tokens(key, tokens))
    problems = []
    if got.text != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(got.text, expected, strict=False)) if a != b),
            min(len(got.text), len(expected)),
        )
        problems.append(f"text differs at {at} ({len(got.text)} of {len(expected)} chars)")
    if got.deltas != tokens:
        problems.append(f"{got.deltas} deltas for {tokens} chunks")
    if not got.done:
        problems.append("no [DONE]")
    if got.finish_reason != "stop":
        problems.append(f"finish_reason {got.finish_reason!r}")
    if got.completion_tokens != tokens:
        problems.append("usage missing or wrong")
    if got.extra:
        problems.append("extra choices or parts")
    return "; ".join(problems) or None


def core_busy(core):
    """Busy CPU seconds of one core (/proc/stat cpuN line)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            fields = list(map(int, line.split()[1:9]))
            user, nice, system, _idle, _iowait, irq, softirq, steal = fields
            return (user + nice + system + irq + softirq + steal) / procs.CLOCK_TICKS
    return 0.0


async def measure(args):
    """Warm up with one short stream, then N streams spread over the ramp; CPU per event."""
    reader = Reader(args.worker, args.url)
    tag = args.tag
    warm_key = f"{tag}-warm"
    if problem := verdict(
        warm_key, WARM_UP_TOKENS, await reader.read(warm_key, WARM_UP_TOKENS), None
    ):
        raise RuntimeError(f"warm-up stream wrong: {problem}")
    keys = [f"{tag}-{i}" for i in range(args.clients)]
    outcome = {}
    time_limit = args.ramp + 3 * args.tokens / args.rate + 30
    core = next(iter(os.sched_getaffinity(0)))
    rss_idle = procs.memory_kb(os.getpid())["VmRSS"]

    async def one(index, key):
        await asyncio.sleep(max(0.0, start + index * args.ramp / len(keys) - time.monotonic()))
        error, got = None, Got()
        try:
            async with asyncio.timeout(time_limit):
                got = await reader.read(key, args.tokens)
        except TimeoutError:
            error = f"no end within {time_limit:.0f} s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        outcome[key] = verdict(key, args.tokens, got, error)

    machine_before = procs.machine_busy_seconds()
    upstream_before = procs.cpu_seconds(args.upstream_pid) if args.upstream_pid else 0.0
    core_before = core_busy(core)
    ticks_before = procs.cpu_seconds(os.getpid())
    wall_before = time.monotonic()
    cpu_before = time.process_time()
    start = time.monotonic()
    await asyncio.gather(*(one(i, key) for i, key in enumerate(keys)))
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    ticks = procs.cpu_seconds(os.getpid()) - ticks_before
    core_others = core_busy(core) - core_before - ticks
    machine_others = procs.machine_busy_seconds() - machine_before - ticks
    upstream_cpu = (
        procs.cpu_seconds(args.upstream_pid) - upstream_before if args.upstream_pid else 0.0
    )
    await reader.close()
    chunks = args.clients * args.tokens
    events = args.clients * (args.tokens + FRAMING_EVENTS)
    wrong = {key: problem for key, problem in outcome.items() if problem}
    return {
        "candidate": args.worker,
        "clients": args.clients,
        "tokens": args.tokens,
        "chunks": chunks,
        "events": events,
        "loop": args.loop,
        "cpu_s": cpu,
        "cpu_ticks_s": ticks,
        "wall_s": wall,
        "us_per_event": cpu / events * 1e6,
        "us_per_chunk": cpu / chunks * 1e6,
        "streams_ok": len(keys) - len(wrong),
        "streams_wrong": len(wrong),
        "wrong_examples": dict(list(wrong.items())[:3]),
        "core_others": max(0.0, core_others) / wall,  # other programs on our core, in cores
        "machine_others": max(0.0, machine_others) / wall,  # all cores, minus this process
        # The fake upstream's share of its core: near 1, it falls behind its schedule and
        # chunks arrive several to a read, which would flatter everyone's CPU per chunk.
        "upstream_busy": upstream_cpu / wall,
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": procs.memory_kb(os.getpid())["VmHWM"],
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def run_loop(coroutine, loop="asyncio"):
    """daphne runs Confab on asyncio's own loop (Twisted's asyncio reactor): so do the
    measured runs, unless --loop uvloop."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def worker_main(args):
    setup_django()
    if args.worker == "selfcheck":
        result = run_loop(selfcheck(args), args.loop)
    elif args.worker == "micro":
        result = micro()
    else:
        result = run_loop(measure(args), args.loop)
    print("RESULT " + json.dumps(result), flush=True)


# The self-check


def _random_stream(rng):
    """An event stream with every construct the specification allows, and its bytes."""
    pieces = []
    newline = lambda: rng.choice(["\n", "\r\n", "\r"])  # noqa: E731
    if rng.random() < 0.1:
        pieces.append("\ufeff")
    for _ in range(rng.randint(0, 12)):
        for _ in range(rng.randint(0, 4)):
            kind = rng.random()
            value = rng.choice(["", " ", "x", ' {"a": 1}', "中文 text", ":colon", "  two", "é"])
            if kind < 0.55:
                pieces.append(rng.choice(["data:", "data: ", "data"]) + (value if value else ""))
            elif kind < 0.65:
                pieces.append(": comment" + value)
            elif kind < 0.75:
                pieces.append("event:" + rng.choice([" error", "message", " x", ""]))
            elif kind < 0.82:
                pieces.append("id: " + value)
            elif kind < 0.88:
                pieces.append("retry: 100")
            elif kind < 0.94:
                pieces.append("unknown: " + value)
            else:
                pieces.append("")
            pieces.append(newline())
        pieces.append(newline())  # the blank line that dispatches
    if rng.random() < 0.3:
        pieces.append("data: unfinished")
    return "".join(pieces).encode()


def _cut(data, rng):
    """The same bytes in random pieces, sometimes one byte at a time."""
    if rng.random() < 0.1:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = (
        sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 8))))
        if len(data) > 1
        else []
    )
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _split_all(pieces):
    splitter = SSESplitter()
    events = []
    for piece in pieces:
        events.extend(splitter.feed(piece))
    return [
        (e.decode("utf-8", "replace") or "message", d.decode("utf-8", "replace")) for e, d in events
    ]


def check_splitter(seed=7, rounds=3000):
    rng = random.Random(seed)
    failures, examples = 0, []
    for _ in range(rounds):
        data = _random_stream(rng)
        ours = _split_all(_cut(data, rng))
        reference = reference_events(data)
        if ours != reference:
            failures += 1
            if len(examples) < 3:
                examples.append(
                    {"stream": data.decode(errors="replace"), "ours": ours, "spec": reference}
                )
    # Streams as providers send them.
    realistic_failures = 0
    for _ in range(500):
        events = [
            "data: "
            + json.dumps({"i": i, "t": "中" * rng.randint(0, 3)}, ensure_ascii=rng.random() < 0.5)
            for i in range(rng.randint(1, 6))
        ]
        sep = rng.choice(["\n", "\r\n"])
        if rng.random() < 0.3:
            events.insert(0, ": keep-alive")
        data = "".join(e + sep + sep for e in events).encode()
        realistic_failures += _split_all(_cut(data, rng)) != reference_events(data)
    return {
        "fuzzed_streams": rounds,
        "differ_from_spec": failures,
        "examples": examples,
        "realistic_streams": 500,
        "realistic_differ": realistic_failures,
    }


class _TinyServer:
    """A local server whose connection handler is `handler(reader, writer)`; TLS optional."""

    def __init__(self, handler, ssl_context=None):
        self.handler = handler
        self.ssl_context = ssl_context
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handler, "127.0.0.1", 0, ssl=self.ssl_context)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc_info):
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


async def _read_request(reader):
    from bench.upstream import read_request

    return await read_request(reader)


def _cut_handler(events_before_cut):
    """Answers 200, sends some events, then closes the connection mid-reply."""
    from bench.upstream import completion_chunk, http_chunk, response_head, sse_event

    async def handle(reader, writer):
        with contextlib.suppress(Exception):
            await _read_request(reader)
            writer.write(response_head("200 OK", "text/event-stream"))
            for i in range(events_before_cut):
                writer.write(http_chunk(sse_event(completion_chunk("k", {"content": f"t{i}"}))))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    return handle


async def _silent_handler(reader, writer):
    """Answers 200 with one event, then says nothing (the idle timeout must fire)."""
    from bench.upstream import completion_chunk, http_chunk, response_head, sse_event

    with contextlib.suppress(Exception):
        await _read_request(reader)
        writer.write(response_head("200 OK", "text/event-stream"))
        writer.write(http_chunk(sse_event(completion_chunk("k", {"content": "t"}))))
        await writer.drain()
        await asyncio.sleep(5)
    writer.close()


def _self_signed(directory):
    """A certificate for 127.0.0.1 made with the openssl command, or None without it."""
    if not shutil.which("openssl"):
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def _error_codes(name, url, ssl_client=None):
    """(error code or 'ok', text) of one short stream of candidate `name` against `url`."""
    reader = Reader(name, url, ssl_client)
    reader.provider.idle_timeout_s = 0.5
    try:
        async with asyncio.timeout(15):
            got = await reader.read("tls-check", 20)
        if got.failure:
            outcome = [got.failure, got.failure_text]
        else:
            problem = verdict("tls-check", 20, got, None)
            outcome = ["ok" if problem is None else f"wrong: {problem}", ""]
    except Exception as error:
        outcome = [type(error).__name__, str(error)[:120]]
    finally:
        with contextlib.suppress(Exception):
            await reader.close()
    return outcome


async def selfcheck(args):
    from bench.upstream import FakeUpstream

    result = {"splitter": check_splitter(), "errors": {}}
    names = [n for n in args.candidates.split(",") if n in CHECKED]
    refused = f"http://127.0.0.1:{procs.free_port()}/v1"
    async with (
        _TinyServer(_cut_handler(3)) as cut_port,
        _TinyServer(_silent_handler) as silent_port,
    ):
        for name in names:
            result["errors"][name] = {
                "refused": await _error_codes(name, refused),
                "cut mid-reply": await _error_codes(name, f"http://127.0.0.1:{cut_port}/v1"),
                "silent 0.5 s": await _error_codes(name, f"http://127.0.0.1:{silent_port}/v1"),
            }
    with tempfile.TemporaryDirectory() as directory:
        made = _self_signed(Path(directory))
        if made is None:
            result["tls"] = "skipped: no openssl command"
        else:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(*map(str, made))
            client_ctx = ssl.create_default_context(cafile=str(made[0]))
            upstream = FakeUpstream(rate=1000, default_tokens=20)
            result["tls"] = {}
            async with _TinyServer(upstream.handle, server_ctx) as port:
                for name in names:
                    result["tls"][name] = await _error_codes(
                        name, f"https://127.0.0.1:{port}/v1", client_ctx
                    )
    return result


# What the parsing costs, without a network


def micro(repeat=5, count=20000):
    """µs per event of: json.loads; Fold.add (json.loads included); ChunkReader.read
    (json.loads included), and with Completion.add of its events; SSESplitter.feed of one
    event; httpx-sse's line and event decoders on the same event, decoded to text first as
    `aiter_text()` does."""
    from bench.upstream import completion_chunk, sse_event
    from conversations.upstream import Completion
    from conversations.upstream.chunks import ChunkReader

    events = [
        sse_event(completion_chunk("r-1", {"content": t})) for t in reply_tokens("micro", count)
    ]
    datas = [e[6:-2] for e in events]

    def best(function):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return min(times) / count * 1e6

    def loads():
        for data in datas:
            json.loads(data)

    def fold():
        folding = Fold()
        for data in datas:
            folding.add(data)

    def chunk_reader():
        reader = ChunkReader(str)
        for data in datas:
            reader.read(data)

    def chunk_reader_completion():
        reader, completion = ChunkReader(str), Completion()
        for data in datas:
            for event in reader.read(data):
                completion.add(event)

    def split():
        splitter = SSESplitter()
        for event in events:
            splitter.feed(event)

    result = {
        "json_loads": best(loads),
        "fold": best(fold),
        "chunk_reader": best(chunk_reader),
        "chunk_reader_completion": best(chunk_reader_completion),
        "split_own": best(split),
    }
    if have_httpx_sse():
        from httpx_sse._decoders import SSEDecoder, SSELineDecoder

        def split_httpx_sse():
            text = codecs.getincrementaldecoder("utf-8")(errors="replace")
            lines, decoder = SSELineDecoder(), SSEDecoder()
            for event in events:
                for line in lines.decode(text.decode(event)):
                    decoder.decode(line.rstrip("\n"))

        result["split_httpx_sse"] = best(split_httpx_sse)
    result["event_bytes_mean"] = sum(map(len, events)) / len(events)
    return result


# The harness (this process, on the load core)


class Upstream:
    def __init__(self, cores, rate, tokens):
        command = [sys.executable, "-m", "bench.upstream", "--rate", str(rate)]
        command += ["--tokens", str(tokens), "--lifetime", "1200"]
        self.process = procs.start(command, cores=cores, cwd=ROOT)
        port = procs.wait_for_line(self.process, "port ", timeout=15).split()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    def forget(self, keys):
        """Drop the timelines of finished streams (the upstream keeps them until asked)."""
        import urllib.request

        request = urllib.request.Request(
            self.url.removesuffix("/v1") + "/bench/timeline",
            data=json.dumps(keys).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def close(self):
        procs.stop(self.process)


def worker_env(var_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        PYTHONPATH=str(ROOT),
        CONFAB_VAR_DIR=str(var_dir),
        DJANGO_DEBUG="False",
        DJANGO_SECRET_KEY="bench-read-path-not-a-secret",
        DJANGO_SETTINGS_MODULE="chatsite.settings",
    )
    return env


def run_worker(arguments, *, cores, env, timeout):
    """One worker process pinned to `cores`: its RESULT line, parsed."""
    command = [sys.executable, "-m", "bench.read_path", *arguments]
    with tempfile.TemporaryFile("w+") as log:
        process = procs.start(command, cores=cores, env=env, cwd=ROOT, log=log)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            procs.stop(process)
            raise RuntimeError(f"worker {arguments[:2]} took over {timeout:.0f} s") from None
        log.seek(0)
        output = log.read()
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(
        f"worker {arguments[:2]} printed no result (exit {process.returncode}):\n{output[-3000:]}"
    )


def spread(values):
    median = statistics.median(values)
    return (
        median,
        min(values),
        max(values),
        (max(values) - min(values)) / median * 100 if median else 0,
    )


def floor_ratios(runs, name, reference=FLOOR):
    """`name`'s µs per event over `reference`'s, round by round (the same minute)."""
    by_round = {(r["round"], r["candidate"]): r["us_per_event"] for r in runs}
    return [
        by_round[(r["round"], name)] / by_round[(r["round"], reference)]
        for r in runs
        if r["candidate"] == name and (r["round"], reference) in by_round
    ]


def table(runs, scale_runs):
    by = collections.defaultdict(list)
    for run in runs:
        by[run["candidate"]].append(run)
    medians = {name: statistics.median(r["us_per_event"] for r in rs) for name, rs in by.items()}
    floor = medians.get(FLOOR)
    scale = {run["candidate"]: run for run in scale_runs}
    scale_n = scale_runs[0]["clients"] if scale_runs else None
    header = (
        "| candidate | what | runs | µs/event median | min – max (spread) | ×floor F, median"
        " (+µs) | ×F round by round | µs/chunk median | streams exact | peak RSS MB"
        " | other load: our core / machine, cores | upstream busy |"
        + (f" µs/event N={scale_n} (×F) |" if scale_n else "")
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in sorted(by, key=lambda n: medians[n]):
        rs = by[name]
        values = [r["us_per_event"] for r in rs]
        median, low, high, pct = spread(values)
        ok = sum(r["streams_ok"] for r in rs)
        total = ok + sum(r["streams_wrong"] for r in rs)
        versus = f"{median / floor:.2f}× ({median - floor:+.1f})" if floor else "–"
        ratios = floor_ratios(rs + by.get(FLOOR, []), name)
        rounds = f"{min(ratios):.2f} – {max(ratios):.2f}" if ratios else "–"
        per_chunk = statistics.median(r["us_per_chunk"] for r in rs)
        others = max(r["core_others"] for r in rs)
        machine = max(r["machine_others"] for r in rs)
        busy = max(r.get("upstream_busy", 0) for r in rs)
        rss = max(r["rss_peak_kb"] for r in rs) / 1024
        row = (
            f"| {name} | {DESCRIPTIONS[name]} | {len(rs)} | {median:.1f} | {low:.1f} – {high:.1f}"
            f" ({pct:.0f} %) | {versus} | {rounds} | {per_chunk:.1f} | {ok}/{total} | {rss:.1f}"
            f" | ≤ {others:.2f} / {machine:.2f} | ≤ {busy:.0%} |"
        )
        if scale_n:
            s, f = scale.get(name), scale.get(FLOOR)
            if s:
                ratio = f" ×{s['us_per_event'] / f['us_per_event']:.2f}" if f else ""
                row += (
                    f" {s['us_per_event']:.1f}{ratio}"
                    f" ({s['streams_ok']}/{s['streams_ok'] + s['streams_wrong']} exact) |"
                )
            else:
                row += " – |"
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, help="concurrent streams (N)")
    parser.add_argument("--tokens", type=int, default=300, help="content chunks per stream")
    parser.add_argument("--rate", type=float, default=50, help="chunks per second per stream")
    parser.add_argument("--ramp", type=float, help="seconds over which streams start")
    parser.add_argument("--runs", type=int, default=3, help="rounds: one run of each candidate")
    parser.add_argument("--candidates", help=f"comma-separated (default {DEFAULT_CANDIDATES})")
    parser.add_argument("--scale-clients", type=int, default=300, help="N of the scale runs")
    parser.add_argument(
        "--scale-candidates", default="A,F", help="run once each at --scale-clients ('' none)"
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the workers' loop"
    )
    parser.add_argument("--quick", action="store_true", help="N = 20, 100 chunks, 1 run each")
    parser.add_argument("--selfcheck-only", action="store_true", help="JSON only to --output")
    parser.add_argument("--no-selfcheck", action="store_true")
    parser.add_argument("--output", type=Path)
    # A worker (internal): one measured run, the self-check or the micro-benchmark.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--upstream-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.candidates is None:
        args.candidates = DEFAULT_CANDIDATES
        if not have_httpx_sse():
            print("httpx-sse is not installed: S skipped (pip install httpx-sse)", file=sys.stderr)
            args.candidates = args.candidates.replace(",S", "")
    names = args.candidates.split(",")
    scale = [n for n in args.scale_candidates.split(",") if n]
    if unknown := set(names + scale) - set(DESCRIPTIONS):
        parser.error(f"unknown candidates {sorted(unknown)}: there are {', '.join(DESCRIPTIONS)}")
    if "S" in names + scale and not have_httpx_sse():
        parser.error("S needs httpx-sse: pip install httpx-sse")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop needs uvloop: pip install uvloop")
    args.scale_candidates = [n for n in scale if n in names]
    if args.quick:
        args.clients, args.tokens, args.runs, args.scale_candidates = 20, 100, 1, []
    if args.ramp is None:
        args.ramp = args.tokens / args.rate / 2
    if args.output is None and not args.selfcheck_only and not args.worker:
        name = "read_path_quick.json" if args.quick else f"read_path-{_head()}.json"
        args.output = RESULTS / name
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    cores = procs.Cores.split()
    if not cores.pinned:
        print("warning: fewer than 2 cores: the upstream shares the reader's core", file=sys.stderr)
    os.sched_setaffinity(0, cores.load)
    names = args.candidates.split(",")
    started = time.monotonic()
    result = {
        "machine": procs.machine(),
        "settings": {
            k: getattr(args, k) for k in ("clients", "tokens", "rate", "ramp", "runs", "loop")
        },
        "candidates": {n: DESCRIPTIONS[n] for n in names},
        "code": _code_state(),
        "argv": sys.argv[1:],
        "runs": [],
        "scale_runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="confab-read-path-") as var_dir:
        env = worker_env(var_dir)
        common = ["--candidates", ",".join(names), "--loop", args.loop]
        if not args.no_selfcheck:
            check = run_worker(
                ["--worker", "selfcheck", *common], cores=cores.server, env=env, timeout=180
            )
            check["ok"] = _selfcheck_ok(check)
            result["selfcheck"] = check
            print(_selfcheck_summary(check), flush=True)
            result["micro"] = run_worker(
                ["--worker", "micro"], cores=cores.server, env=env, timeout=120
            )
            print(
                "micro, µs per event: "
                + ", ".join(f"{k} {v:.2f}" for k, v in result["micro"].items()),
                flush=True,
            )
        if args.selfcheck_only:
            if args.output:
                _write(args.output, result)
            return 0 if result["selfcheck"]["ok"] else 1
        upstream = Upstream(cores.load, args.rate, args.tokens)
        try:

            def one(name, clients, label):
                tag = f"rp{label}{name}"
                arguments = ["--worker", name, "--url", upstream.url, "--tag", tag]
                arguments += ["--upstream-pid", str(upstream.process.pid), "--loop", args.loop]
                arguments += ["--clients", str(clients), "--tokens", str(args.tokens)]
                arguments += ["--rate", str(args.rate), "--ramp", str(args.ramp)]
                limit = args.ramp + 3 * args.tokens / args.rate + 120
                run = run_worker(arguments, cores=cores.server, env=env, timeout=limit)
                run["round"] = label
                upstream.forget([f"{tag}-warm", *(f"{tag}-{i}" for i in range(clients))])
                print(
                    f"  {name:>2} N={clients} round {label}: {run['us_per_event']:.1f} µs/event,"
                    f" {run['streams_ok']}/{clients} exact, other load on our core"
                    f" {run['core_others']:.2f}, machine {run['machine_others']:.2f},"
                    f" upstream busy {run['upstream_busy']:.0%}",
                    flush=True,
                )
                return run

            for repetition in range(args.runs):
                # A different order each round, so that a slow minute does not hit one
                # candidate.
                order = names[repetition % len(names) :] + names[: repetition % len(names)]
                for name in order:
                    result["runs"].append(one(name, args.clients, f"{repetition}"))
            for name in args.scale_candidates:
                result["scale_runs"].append(one(name, args.scale_clients, "s"))
        finally:
            upstream.close()
    result["elapsed_s"] = time.monotonic() - started
    result["table"] = table(result["runs"], result["scale_runs"])
    print()
    print(result["table"])
    wrong = sum(r["streams_wrong"] for r in result["runs"] + result["scale_runs"])
    print(
        f"\nread_path: {len(result['runs']) + len(result['scale_runs'])} runs in"
        f" {result['elapsed_s']:.0f} s on {args.loop}, {wrong} wrong streams -> {args.output}"
    )
    _write(args.output, result)
    return 1 if wrong else 0


def _selfcheck_summary(check):
    splitter = check["splitter"]
    parts = [
        f"self-check: SSESplitter differs from the spec on {splitter['differ_from_spec']}"
        f"/{splitter['fuzzed_streams']} fuzzed streams and {splitter['realistic_differ']}"
        f"/{splitter['realistic_streams']} realistic ones;"
    ]
    for name, outcomes in check["errors"].items():
        parts.append(f"{name}: " + ", ".join(f"{k} -> {v[0]}" for k, v in outcomes.items()) + ";")
    if isinstance(check.get("tls"), dict):
        parts.append("TLS: " + ", ".join(f"{k} {v[0]}" for k, v in check["tls"].items()))
    else:
        parts.append(f"TLS: {check.get('tls')}")
    parts.append("all as expected" if check["ok"] else "NOT as expected: see the JSON")
    return "\n  ".join(parts)


# What each failure must read as: the codes of ChatStream's `Failed` events.
EXPECTED_ERRORS = {
    "refused": {"connection"},
    "cut mid-reply": {"connection"},  # the HTTP parser reports the unfinished chunked body
    "silent 0.5 s": {"timeout"},
}


def _selfcheck_ok(check):
    splitter, tls = check["splitter"], check.get("tls")
    return (
        splitter["differ_from_spec"] == splitter["realistic_differ"] == 0
        and all(
            outcomes.keys() == EXPECTED_ERRORS.keys()
            and all(outcomes[k][0] in EXPECTED_ERRORS[k] for k in outcomes)
            for outcomes in check["errors"].values()
        )
        and (not isinstance(tls, dict) or all(v[0] == "ok" for v in tls.values()))
    )


def _head():
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def _code_state():
    """Which reading code was measured (the work tree changes under other engineers)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "conversations" / "upstream").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    edited = subprocess.run(
        ["git", "status", "--short", "--", "conversations/upstream"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"head": _head(), "upstream_sha256": digest.hexdigest()[:16], "edited": bool(edited)}


def _write(path, result):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
