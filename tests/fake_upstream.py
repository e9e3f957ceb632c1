"""A fake OpenAI-compatible upstream on loopback, with byte-level control over its replies.

It runs its own event loop in a thread, so sync tests, async tests and server processes
started by tests can all talk to it. A script is a list of steps, each one of:

- bytes: written to the socket as one write (split them to split a network read),
- a float: seconds to wait,
- CLOSE: close the connection there and then.

Scripts are chosen by the request's `model`; a script may also be a function of the
request body that returns the steps.
"""

import asyncio
import json
import threading

CLOSE = object()
DEFAULT_MODEL = "fake-model"


def sse(payload):
    """One Server-Sent Event carrying a JSON chunk (or the literal [DONE])."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def chunk(delta=None, *, finish_reason=None, index=0, usage=None, choices=True):
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": DEFAULT_MODEL}
    body["choices"] = (
        [{"index": index, "delta": delta or {}, "finish_reason": finish_reason}] if choices else []
    )
    if usage is not None:
        body["usage"] = usage
    return body


def stream_headers(status=200, content_type="text/event-stream"):
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    ).encode()


def reply(parts, *, delay=0.0, usage=(11, 7), finish_reason="stop"):
    """The plain OpenAI shape: a role delta, content deltas, a finish chunk, usage, [DONE]."""
    steps = [stream_headers(), sse(chunk({"role": "assistant", "content": ""}))]
    for part in parts:
        if delay:
            steps.append(delay)
        steps.append(sse(chunk({"content": part})))
    steps.append(sse(chunk(finish_reason=finish_reason)))
    if usage is not None:
        steps.append(usage_chunk(*usage))
    steps.append(sse("[DONE]"))
    return steps


def usage_chunk(prompt, completion):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return sse(chunk(choices=False, usage={**usage, "total_tokens": prompt + completion}))


def calls(*calls, usage=(11, 7), content=""):
    """A reply that calls tools: each call `(name, arguments)`, arguments a dict (sent as
    JSON, in two fragments) or a string (sent as it is), then finish_reason tool_calls."""
    steps = [stream_headers(), sse(chunk({"role": "assistant", "content": content}))]
    for index, (name, arguments) in enumerate(calls):
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        head = {"index": index, "id": f"call_{index}_{name}", "type": "function"}
        steps.append(
            sse(chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}))
        )
        for part in (text[: len(text) // 2], text[len(text) // 2 :]):
            steps.append(
                sse(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
            )
    steps.append(sse(chunk(finish_reason="tool_calls")))
    steps += [usage_chunk(*usage), sse("[DONE]")]
    return steps


def agent(*turns):
    """A script that plays `turns[k]` for a request that follows k rounds of tool results
    in the current turn (the last one again once they run out)."""

    def play(body):
        rounds = 0
        for message in reversed(body["messages"]):
            if message["role"] == "user":
                break
            rounds += message["role"] == "assistant" and bool(message.get("tool_calls"))
        turn = turns[min(rounds, len(turns) - 1)]
        return turn(body) if callable(turn) else turn

    return play


def http_error(status, message):
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    return [
        (
            f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    ]


def echo(body):
    """The default script: repeats the last user message back, a word at a time."""
    last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    words = f"You said: {last}".split(" ")
    return reply([w if i == 0 else " " + w for i, w in enumerate(words)], delay=0.01)


class FakeUpstream:
    def __init__(self, port=0):
        self.port = port  # 0: any free one
        self.scripts = {DEFAULT_MODEL: echo}
        self.models_script = None  # steps for `GET /models` instead of the list of scripts
        self.requests = []
        self.closed_early = []  # models whose client hung up before the script ended
        self.hung_up = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="fake-upstream")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        self.thread.start()
        self.started.wait(5)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def script(self, model, steps):
        self.scripts[model] = steps

    def wait_hung_up(self, model, timeout=5):
        """Whether the client of a request for `model` hangs up before its script ends,
        within `timeout` seconds (blocking: from async code, run it in a thread)."""
        with self.hung_up:
            return self.hung_up.wait_for(lambda: model in self.closed_early, timeout)

    def reset(self):
        self.scripts = {DEFAULT_MODEL: echo}
        self.models_script = None
        self.requests.clear()
        self.closed_early.clear()

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    async def _handle(self, reader, writer):
        try:
            method, path, headers, body = await self._read_request(reader)
            if method == "GET" and path.endswith("/models") and self.models_script:
                await self._play(reader, writer, "GET /models", self.models_script)
                return
            if method == "GET" and path.endswith("/models"):
                data = {
                    "object": "list",
                    "data": [{"id": m, "object": "model"} for m in self.scripts],
                }
                payload = json.dumps(data).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                return
            request = json.loads(body or b"{}")
            self.requests.append({"path": path, "headers": headers, "body": request})
            model = request.get("model", DEFAULT_MODEL)
            steps = self.scripts.get(model, self.scripts[DEFAULT_MODEL])
            if callable(steps):
                steps = steps(request)
            await self._play(reader, writer, model, steps)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _play(self, reader, writer, model, steps):
        hung_up = asyncio.ensure_future(reader.read())  # EOF: the client closed
        try:
            for step in steps:
                if hung_up.done():
                    self._hang_up(model)
                    return
                if step is CLOSE:
                    return
                if isinstance(step, int | float):
                    await asyncio.wait([hung_up], timeout=step)
                    continue
                writer.write(step)
                await writer.drain()
        except ConnectionError:
            self._hang_up(model)
        finally:
            hung_up.cancel()

    def _hang_up(self, model):
        with self.hung_up:
            self.closed_early.append(model)
            self.hung_up.notify_all()

    @staticmethod
    async def _read_request(reader):
        request_line = (await reader.readline()).decode()
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        body = await reader.readexactly(length) if length else b""
        return method, path, headers, body


def json_answer(payload, status=200, headers=""):
    """A whole JSON answer (the embeddings endpoint's, or an error), in one write."""
    body = json.dumps(payload).encode()
    return [
        (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    ]


def embeddings(embed):
    """A script for `POST /embeddings`: `embed(text)` gives each input's vector; usage
    counts a token per four characters."""

    def play(body):
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(t) // 4 + 1 for t in texts)
        return json_answer(
            {
                "object": "list",
                "data": [{"index": i, "embedding": embed(t)} for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return play
