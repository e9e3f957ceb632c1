"""What reading the upstream costs, per chunk, for a few ways of reading it.

    .venv/bin/python -m bench.read_path                  # the default run, about 3 minutes
    .venv/bin/python -m bench.read_path --quick          # N = 20, 100-chunk replies, 1 run each
    .venv/bin/python -m bench.read_path --candidates A,H --runs 5 --clients 100
    .venv/bin/python -m bench.read_path --selfcheck-only # correctness checks only, a few s

A micro-benchmark of the part of the relay that reads the provider: no Django database, no
websockets, only N concurrent Chat Completions streams read and folded into text, as
`conversations.upstream.ChatStream` does for the runner. The fake upstream (bench.upstream)
runs in its own process pinned to the load core; each measured run is a fresh process pinned
to the server's core, on uvloop as the server runs, that opens --clients streams spread over
--ramp seconds (half a reply by default, like bench.relay), reads them to `[DONE]` and
reports its own CPU time (process_time, cross-checked with /proc ticks) per content chunk
the upstream wrote. Each run's streams are checked against bench.text: the folded text,
finish reason, usage and delta count of every stream must be exactly what was sent, or the
candidate is marked wrong.

Candidates (each yields the same `Delta`s, folded by ChatStream's own `_fold`); the default
run measures A, H and F, three runs each, then the better of A and H once at
--scale-clients (300):

  A   conversations.upstream.ChatStream itself, as it is at the commit measured: aiohttp's
      client (C HTTP parser), `response.content.iter_any()`, conversations.sse.SSESplitter
  H   httpx as a minimal client reads a stream (bench.clients.ask_upstream's reading):
      `client.stream("POST", ...)`, `response.aiter_lines()`, the `data: ` prefix stripped
      here, under A's deadline and error mapping. The core of the stack ChatStream read
      with before the switch, so that the switch's gain stays reproducible (httpx-sse is
      no longer a dependency and is not used)
  F   floor, not a product candidate: asyncio.open_connection, HTTP/1.1 chunked decoded by
      hand, SSESplitter and the same fold, no timeouts

Earlier candidates are gone: B, C, D, BD and CD patched the httpx + httpx-sse loop that
ChatStream no longer has, and A adopted E (aiohttp, iter_any, SSESplitter, the fold), so A
now measures what E measured. bench/results/read_path*.json were taken before the switch,
when A was ChatStream on httpx + httpx-sse (anyio backend): their E is today's A, and their
A is today's H with httpx-sse's decoding instead of aiter_lines.

Before the runs a self-check (also in a fresh process) fuzzes SSESplitter against a plain
reading of the SSE specification (`reference_events`) and checks the error mapping (refused,
cut mid-reply, idle timeout) and TLS of A and H against small local servers. A
micro-benchmark prices json.loads, the fold (json.loads included) and SSESplitter per
chunk, without any network.

Everything listens on 127.0.0.1; every wait is bounded. Results: a Markdown table on stdout
and the JSON in --output (bench/results/read_path.json, --quick: read_path_quick.json;
--selfcheck-only writes its JSON only to an --output given, never over a measurement).
"""

import argparse
import asyncio
import collections
import contextlib
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
from pathlib import Path

from bench import procs
from bench.text import MODEL, prompt, reply_tokens
from conversations.sse import SSESplitter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "sk-bench-0000-not-a-secret"
WARM_UP_TOKENS = 5
PRODUCT = ("A", "H")
DEFAULT_CANDIDATES = "A,H,F"
DESCRIPTIONS = {
    "A": "today: ChatStream, aiohttp iter_any + SSESplitter + _fold",
    "H": "httpx minimal reader: aiter_lines + _fold, A's deadline",
    "F": "floor: asyncio streams, hand-decoded chunked, split + _fold",
}

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


# The readers other than ChatStream itself


def fold_event(stream, event, data):
    """ChatStream._fold itself, on the bytes of an event."""
    return stream._fold(event, data)


def httpx_client(provider, verify=True):
    """H's client, as client_for made it before the switch (no read timeout: see below)."""
    import httpx
    from django.conf import settings

    headers = {**provider.extra_headers}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    return httpx.AsyncClient(
        base_url=provider.base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(
            connect=settings.CONFAB_CONNECT_TIMEOUT_S, read=None, write=30, pool=30
        ),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=50),
        verify=verify,
    )


async def httpx_stream(stream, client):
    """H: the lines of an httpx response, as bench.clients.ask_upstream reads them.

    Like ChatStream, one deadline for the first byte, pushed on by each event, and errors
    mapped to UpstreamError codes. The data, text by then, goes back to bytes for _fold.
    """
    import httpx

    from conversations.upstream import UpstreamError

    loop = asyncio.get_running_loop()
    try:
        async with (
            asyncio.timeout(stream.first_byte_timeout) as deadline,
            client.stream("POST", "chat/completions", json=stream.body) as response,
        ):
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                deadline.reschedule(loop.time() + stream.idle_timeout)
                data = line[5:].strip()
                if data == "[DONE]":
                    stream.done = True
                    return
                for delta in fold_event(stream, b"", data.encode()):
                    yield delta
    except TimeoutError:
        raise UpstreamError("No event within the deadline.", code="timeout") from None
    except httpx.HTTPError as error:
        raise UpstreamError(f"The connection failed: {error}", code="connection") from None
    raise UpstreamError("The upstream closed before [DONE].", code="cut")


def trust_for_a(ssl_context):
    """client_for's sessions, trusting `ssl_context` (the TLS self-check's certificate)."""
    import aiohttp

    from conversations import upstream

    sessions = {}

    def client_for(provider):
        loop = asyncio.get_running_loop()
        if loop not in sessions:
            sessions[loop] = aiohttp.ClientSession(
                headers=upstream._headers(provider),
                connector=aiohttp.TCPConnector(limit=0, ssl=ssl_context),
            )
        return sessions[loop]

    async def close_clients():
        for session in sessions.values():
            await session.close()
        sessions.clear()

    upstream.client_for, upstream.close_clients = client_for, close_clients


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


async def floor_stream(stream, host, port, body):
    """F: the same request over asyncio streams, the body decoded and split here."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = json.dumps(body).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (host.encode(), port, API_KEY.encode(), len(payload), payload)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(f"unexpected answer {head[:100]!r}")
        dechunker = _Dechunker()
        splitter = SSESplitter()
        while not stream.done and not dechunker.done:
            data = await reader.read(65536)
            if not data:
                break
            for piece in dechunker.feed(data):
                for event, data in splitter.feed(piece):
                    if data == b"[DONE]":
                        stream.done = True
                        break
                    for delta in fold_event(stream, event, data):
                        yield delta
    finally:
        writer.close()


# One measured run (a worker process)


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
    """Opens one stream of a candidate and reads it to the end; counts what it got."""

    def __init__(self, name, base_url, ssl_context=None):
        if name not in DESCRIPTIONS:
            raise ValueError(f"unknown candidate {name}")
        self.name = name
        self.provider = Provider(base_url)
        host_port = base_url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.client = None
        if name == "H":
            self.client = httpx_client(self.provider, ssl_context or True)
        elif name == "A" and ssl_context is not None:
            trust_for_a(ssl_context)

    async def read(self, key, tokens):
        from conversations.upstream import ChatStream

        stream = ChatStream(self.provider, request_body(key, tokens))  # F and H: for its fold
        if self.name == "A":
            deltas = stream.__aiter__()
        elif self.name == "H":
            deltas = httpx_stream(stream, self.client)
        else:
            deltas = floor_stream(stream, self.host, self.port, stream.body)
        count = 0
        async with contextlib.aclosing(deltas):
            async for _delta in deltas:
                count += 1
        return stream, count

    async def close(self):
        from conversations import upstream

        await upstream.close_clients()
        if self.client is not None:
            await self.client.aclose()


def verdict(key, tokens, stream, deltas, error):
    """None when the stream is exactly what the upstream sent, else what differs."""
    if error:
        return error
    expected = "".join(reply_tokens(key, tokens))
    choice = stream.choices.get(0)
    problems = []
    if choice is None or choice.content != expected:
        got = choice.content if choice else ""
        at = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        problems.append(f"text differs at {at} ({len(got)} of {len(expected)} chars)")
    if deltas != tokens:
        problems.append(f"{deltas} deltas for {tokens} chunks")
    if not stream.done:
        problems.append("no [DONE]")
    if choice is not None and choice.finish_reason != "stop":
        problems.append(f"finish_reason {choice.finish_reason!r}")
    if stream.usage is None or stream.usage.completion_tokens != tokens:
        problems.append("usage missing or wrong")
    if len(stream.choices) != 1 or (choice and (choice.reasoning_parts or choice.tool_calls)):
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
    """Warm up with one short stream, then N streams spread over the ramp; CPU per chunk."""
    reader = Reader(args.worker, args.url)
    tag = args.tag
    warm_key = f"{tag}-warm"
    stream, deltas = await reader.read(warm_key, WARM_UP_TOKENS)
    if problem := verdict(warm_key, WARM_UP_TOKENS, stream, deltas, None):
        raise RuntimeError(f"warm-up stream wrong: {problem}")
    keys = [f"{tag}-{i}" for i in range(args.clients)]
    outcome = {}
    time_limit = args.ramp + 3 * args.tokens / args.rate + 30
    core = next(iter(os.sched_getaffinity(0)))
    rss_idle = procs.memory_kb(os.getpid())["VmRSS"]

    async def one(index, key):
        await asyncio.sleep(max(0.0, start + index * args.ramp / len(keys) - time.monotonic()))
        error, stream, deltas = None, None, 0
        try:
            async with asyncio.timeout(time_limit):
                stream, deltas = await reader.read(key, args.tokens)
        except TimeoutError:
            error = f"no end within {time_limit:.0f} s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        outcome[key] = verdict(key, args.tokens, stream, deltas, error)

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
    wrong = {key: problem for key, problem in outcome.items() if problem}
    return {
        "candidate": args.worker,
        "clients": args.clients,
        "tokens": args.tokens,
        "chunks": chunks,
        "cpu_s": cpu,
        "cpu_ticks_s": ticks,
        "wall_s": wall,
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


def run_loop(coroutine):
    import uvloop

    return uvloop.run(coroutine)


def worker_main(args):
    setup_django()
    if args.worker == "selfcheck":
        result = run_loop(selfcheck(args))
    elif args.worker == "micro":
        result = micro()
    else:
        result = run_loop(measure(args))
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
    from conversations import upstream

    saved = upstream.client_for, upstream.close_clients  # trust_for_a replaces them
    reader = Reader(name, url, ssl_client)
    reader.provider.idle_timeout_s = 0.5
    try:
        async with asyncio.timeout(15):
            stream, deltas = await reader.read("tls-check", 20)
        problem = verdict("tls-check", 20, stream, deltas, None)
        outcome = ["ok" if problem is None else f"wrong: {problem}", ""]
    except upstream.UpstreamError as error:
        outcome = [error.code, str(error)[:120]]
    except Exception as error:
        outcome = [type(error).__name__, str(error)[:120]]
    finally:
        with contextlib.suppress(Exception):
            await reader.close()
        upstream.client_for, upstream.close_clients = saved
    return outcome


async def selfcheck(args):
    from bench.upstream import FakeUpstream

    result = {"splitter": check_splitter(), "errors": {}}
    names = [n for n in args.candidates.split(",") if n in PRODUCT]
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


# What json.loads, the fold and the split cost, without a network


def micro(repeat=5, count=20000):
    """µs per chunk of: json.loads; ChatStream._fold (json.loads included); SSESplitter.feed
    of one event."""
    from bench.upstream import completion_chunk, sse_event
    from conversations.upstream import ChatStream

    provider = Provider("http://127.0.0.1:9/v1")
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
            json.loads(data.decode())

    def fold():
        stream = ChatStream(provider, {})
        for data in datas:
            fold_event(stream, b"", data)

    def split():
        splitter = SSESplitter()
        for event in events:
            splitter.feed(event)

    return {
        "json_loads": best(loads),
        "fold_full": best(fold),
        "split_own": best(split),
        "chunk_bytes_mean": sum(map(len, events)) / len(events),
    }


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


def table(runs, scale_runs):
    by = collections.defaultdict(list)
    for run in runs:
        by[run["candidate"]].append(run)
    medians = {name: statistics.median(r["us_per_chunk"] for r in rs) for name, rs in by.items()}
    base = medians.get("A")
    scale = {run["candidate"]: run for run in scale_runs}
    scale_n = scale_runs[0]["clients"] if scale_runs else None
    header = (
        "| candidate | what | runs | µs/chunk median | min – max (spread) | vs A | streams exact"
        " | peak RSS MB | other load: our core / machine, cores | upstream busy |"
        + (f" µs/chunk N={scale_n} |" if scale_n else "")
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in sorted(by, key=lambda n: medians[n]):
        rs = by[name]
        values = [r["us_per_chunk"] for r in rs]
        median, low, high, pct = spread(values)
        ok = sum(r["streams_ok"] for r in rs)
        total = ok + sum(r["streams_wrong"] for r in rs)
        versus = f"{median / base:.2f}× ({median - base:+.1f})" if base else "–"
        others = max(r["core_others"] for r in rs)
        machine = max(r["machine_others"] for r in rs)
        busy = max(r.get("upstream_busy", 0) for r in rs)
        rss = max(r["rss_peak_kb"] for r in rs) / 1024
        row = (
            f"| {name} | {DESCRIPTIONS[name]} | {len(rs)} | {median:.1f} | {low:.1f} – {high:.1f}"
            f" ({pct:.0f} %) | {versus} | {ok}/{total} | {rss:.1f} | ≤ {others:.2f} / {machine:.2f}"
            f" | ≤ {busy:.0%} |"
        )
        if scale_n:
            s = scale.get(name)
            row += (
                f" {s['us_per_chunk']:.1f}"
                f" ({s['streams_ok']}/{s['streams_ok'] + s['streams_wrong']} exact) |"
                if s
                else " – |"
            )
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, help="concurrent streams (N)")
    parser.add_argument("--tokens", type=int, default=500, help="content chunks per stream")
    parser.add_argument("--rate", type=float, default=50, help="chunks per second per stream")
    parser.add_argument("--ramp", type=float, help="seconds over which streams start")
    parser.add_argument("--runs", type=int, default=3, help="runs of each candidate")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    parser.add_argument("--scale-clients", type=int, default=300, help="N of the scale runs")
    parser.add_argument("--scale", type=int, default=1, help="best of A/H run at that N")
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
    if unknown := set(args.candidates.split(",")) - set(DESCRIPTIONS):
        parser.error(f"unknown candidates {sorted(unknown)}: there are {', '.join(DESCRIPTIONS)}")
    if args.quick:
        args.clients, args.tokens, args.runs, args.scale = 20, 100, 1, 0
    if args.ramp is None:
        args.ramp = args.tokens / args.rate / 2
    if args.output is None and not args.selfcheck_only:
        args.output = RESULTS / ("read_path_quick.json" if args.quick else "read_path.json")
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
        "settings": {k: getattr(args, k) for k in ("clients", "tokens", "rate", "ramp", "runs")},
        "candidates": {n: DESCRIPTIONS[n] for n in names},
        "code": _code_state(),
        "argv": sys.argv[1:],
        "runs": [],
        "scale_runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="confab-read-path-") as var_dir:
        env = worker_env(var_dir)
        common = ["--candidates", ",".join(names)]
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
                "micro, µs per chunk: "
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
                arguments += ["--upstream-pid", str(upstream.process.pid)]
                arguments += ["--clients", str(clients), "--tokens", str(args.tokens)]
                arguments += ["--rate", str(args.rate), "--ramp", str(args.ramp)]
                limit = args.ramp + 3 * args.tokens / args.rate + 120
                run = run_worker(arguments, cores=cores.server, env=env, timeout=limit)
                upstream.forget([f"{tag}-warm", *(f"{tag}-{i}" for i in range(clients))])
                print(
                    f"  {name:>2} N={clients} run {label}: {run['us_per_chunk']:.1f} µs/chunk,"
                    f" {run['streams_ok']}/{clients} exact, other load on our core"
                    f" {run['core_others']:.2f}, machine {run['machine_others']:.2f},"
                    f" upstream busy {run['upstream_busy']:.0%}",
                    flush=True,
                )
                return run

            for repetition in range(args.runs):
                # A different order each time, so that a slow minute does not hit one candidate.
                order = names[repetition % len(names) :] + names[: repetition % len(names)]
                for name in order:
                    result["runs"].append(one(name, args.clients, f"{repetition}"))
            product = [n for n in names if n in PRODUCT]
            ranked = sorted(
                product,
                key=lambda n: statistics.median(
                    r["us_per_chunk"] for r in result["runs"] if r["candidate"] == n
                ),
            )
            for name in ranked[: args.scale]:
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
        f" {result['elapsed_s']:.0f} s, {wrong} wrong streams -> {args.output}"
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


EXPECTED_ERRORS = {
    "refused": "connection",
    "cut mid-reply": "connection",
    "silent 0.5 s": "timeout",
}


def _selfcheck_ok(check):
    splitter, tls = check["splitter"], check.get("tls")
    return (
        splitter["differ_from_spec"] == splitter["realistic_differ"] == 0
        and all(
            {k: v[0] for k, v in outcomes.items()} == EXPECTED_ERRORS
            for outcomes in check["errors"].values()
        )
        and (not isinstance(tls, dict) or all(v[0] == "ok" for v in tls.values()))
    )


def _code_state():
    """Which upstream.py was measured (the work tree changes under other engineers)."""
    import hashlib

    source = (ROOT / "conversations" / "upstream.py").read_bytes()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {"head": head, "upstream_py_sha256": hashlib.sha256(source).hexdigest()[:16]}


def _write(path, result):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
