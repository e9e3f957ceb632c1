"""A fake OpenAI-compatible upstream that streams at a set rate and logs when it wrote what.

Run in its own process, so its CPU is never counted as Confab's:

    python -m bench.upstream --rate 50 --tokens 500

It prints `port NNNN` once it listens on 127.0.0.1, then serves until SIGTERM (or
--lifetime seconds, so a forgotten one stops by itself).

- `GET /v1/models` lists one model, bench.text.MODEL.
- `POST /v1/chat/completions` streams the reply of the key named in the prompt
  (bench.text): a role chunk and the first content chunk at once, then one content chunk
  every 1/rate s on an absolute schedule, a finish chunk, a usage chunk and `[DONE]`.
  `max_tokens` sets the number of content chunks. HTTP/1.1, chunked, keep-alive, as
  providers behind a proxy answer.
- `POST /bench/timeline` with a JSON list of keys answers, for each, the monotonic time
  (CLOCK_MONOTONIC, shared by every process of the machine) at which each content chunk
  and `[DONE]` were handed to the socket, and forgets them.
"""

import argparse
import asyncio
import contextlib
import json
import signal
import time

from bench.text import MODEL, key_from, reply_tokens

MAX_BODY = 1_000_000


class Timeline:
    """When each stream's content chunks and [DONE] were written."""

    def __init__(self):
        self.chunks = {}
        self.done = {}

    def start(self, key):
        """A new stream of `key`: the list its chunk times go to."""
        self.done.pop(key, None)
        self.chunks[key] = []
        return self.chunks[key]

    def pop(self, keys):
        return {
            key: {"chunks": self.chunks.pop(key, []), "done": self.done.pop(key, None)}
            for key in keys
        }


def sse_event(payload):
    if not isinstance(payload, str):
        payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def http_chunk(data):
    """One piece of a `Transfer-Encoding: chunked` body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def completion_chunk(key, delta=None, finish_reason=None, usage=None):
    body = {
        "id": f"chatcmpl-{key}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [] if usage else [{"index": 0, "delta": delta or {}, "finish_reason": None}],
    }
    if finish_reason:
        body["choices"][0]["finish_reason"] = finish_reason
    if usage:
        body["usage"] = usage
    return body


def reply_events(key, tokens, prompt_tokens):
    """The SSE events of one reply: (is_content, bytes) in order."""
    yield False, sse_event(completion_chunk(key, {"role": "assistant", "content": ""}))
    for token in tokens:
        yield True, sse_event(completion_chunk(key, {"content": token}))
    yield False, sse_event(completion_chunk(key, finish_reason="stop"))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": prompt_tokens + len(tokens),
    }
    yield False, sse_event(completion_chunk(key, usage=usage))


def response_head(status, content_type, length=None):
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{framing}\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


class FakeUpstream:
    def __init__(self, rate, default_tokens):
        self.interval = 1 / rate
        self.default_tokens = default_tokens
        self.timeline = Timeline()

    async def handle(self, reader, writer):
        """One connection: requests one after another until the client closes it."""
        try:
            while request := await read_request(reader):
                method, path, body = request
                if method == "GET" and path.endswith("/models"):
                    self.answer_json(writer, {"object": "list", "data": [{"id": MODEL}]})
                elif method == "POST" and path.endswith("/chat/completions"):
                    await self.stream_reply(writer, json.loads(body or b"{}"))
                elif method == "POST" and path == "/bench/timeline":
                    self.answer_json(writer, self.timeline.pop(json.loads(body)))
                else:
                    self.answer_json(writer, {"error": {"message": "not found"}}, "404 Not Found")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def answer_json(self, writer, payload, status="200 OK"):
        data = json.dumps(payload).encode()
        writer.write(response_head(status, "application/json", len(data)) + data)

    async def stream_reply(self, writer, request):
        key = key_from(request.get("messages")) or "unnamed"
        count = int(request.get("max_tokens") or self.default_tokens)
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in request["messages"])
        written = self.timeline.start(key)
        writer.write(response_head("200 OK", "text/event-stream"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for is_content, event in reply_events(key, reply_tokens(key, count), prompt_tokens):
            if is_content and written:  # the first content chunk goes out at once
                await asyncio.sleep(max(0.0, started + len(written) * self.interval - loop.time()))
            if writer.is_closing():
                return
            writer.write(http_chunk(event))
            if is_content:
                written.append(time.monotonic())
            await writer.drain()
        writer.write(http_chunk(sse_event("[DONE]")) + b"0\r\n\r\n")
        self.timeline.done[key] = time.monotonic()


async def read_request(reader):
    """(method, path, body) of the next request, or None when the client closed."""
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length > MAX_BODY:
        raise ValueError("request body too large")
    return method, path, await reader.readexactly(length) if length else b""


async def serve(rate, tokens, lifetime):
    upstream = FakeUpstream(rate, tokens)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, backlog=2048)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), lifetime)


def run_loop(coroutine):
    """Run with uvloop when it is there: this is load, not the system under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="content chunks per second")
    parser.add_argument("--tokens", type=int, default=500, help="chunks when no max_tokens")
    parser.add_argument("--lifetime", type=float, default=1800, help="stop after this many s")
    args = parser.parse_args()
    run_loop(serve(args.rate, args.tokens, args.lifetime))


if __name__ == "__main__":
    main()
