"""The two clients of a phase: a browser tab through Confab, and a direct reader (the floor).

Both fill in a `Stream`: when the request left and, for every piece of text received, when
it arrived and how many characters of the reply had arrived by then. That is enough to
tell, for each upstream chunk, when it reached the client (bench/stats.py).
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from bench.text import MODEL, prompt

OPEN_CONCURRENCY = 32
# Admission control: the server is full or restarting and says "try again". Not a failure.
REFUSAL_CODES = {"busy", "unavailable"}


@dataclass
class Stream:
    """One reply as a client saw it. Times are time.monotonic(), shared by every process."""

    key: str
    sent_at: float | None = None
    arrivals: list = field(default_factory=list)  # (time, characters received so far)
    parts: list = field(default_factory=list)
    received: int = 0
    done_at: float | None = None
    error: str | None = None
    refused: str | None = None  # the server's "try again" answer to the send
    # Seen through Confab only:
    final_text: str | None = None  # the content `message.done` carried
    frames: int = 0  # every websocket frame received after the send
    delta_frames: int = 0
    seq_gaps: int = 0  # a delta whose seq skipped one: a frame went missing
    seq_reorders: int = 0  # a delta whose seq was not newer than the last

    @property
    def text(self):
        return "".join(self.parts)

    def receive(self, now, content):
        self.parts.append(content)
        self.received += len(content)
        self.arrivals.append((now, self.received))

    def finish(self, now, message):
        """`message.done` arrived with `message`: the reply as the server saved it."""
        self.done_at = now
        self.final_text = message["content"]
        if message["status"] != "complete":
            self.error = f"reply ended {message['status']}"

    def check_seq(self, seq, last_seq):
        if seq <= last_seq:
            self.seq_reorders += 1
        elif seq > last_seq + 1:
            self.seq_gaps += 1


async def run_streams(streams, ask, *, ramp, time_limit):
    """Start stream i at i * ramp / n seconds from now; give each at most `time_limit` s."""
    start = time.monotonic()

    async def one(index, stream):
        await asyncio.sleep(max(0.0, start + index * ramp / len(streams) - time.monotonic()))
        try:
            async with asyncio.timeout(time_limit):
                await ask(stream)
        except TimeoutError:
            stream.error = f"no end within {time_limit:.0f} s"
        except Exception as error:
            stream.error = f"{type(error).__name__}: {error}"

    await asyncio.gather(*(one(index, stream) for index, stream in enumerate(streams)))


# Through Confab


async def open_tabs(base_url, sessions, *, time_limit):
    """One websocket per session, as a signed-in browser tab opens it; all or none."""
    semaphore = asyncio.Semaphore(OPEN_CONCURRENCY)
    ws_url = base_url.replace("http://", "ws://", 1) + "/ws/chat/"

    async def open_one(session):
        async with semaphore:
            return await connect(
                ws_url,
                origin=base_url,
                additional_headers={"Cookie": f"sessionid={session}"},
                open_timeout=time_limit,
                ping_interval=None,
                max_size=None,
            )

    opened = await asyncio.gather(*map(open_one, sessions), return_exceptions=True)
    failures = [tab for tab in opened if isinstance(tab, BaseException)]
    if failures:
        await close_tabs([tab for tab in opened if not isinstance(tab, BaseException)])
        raise RuntimeError(f"{len(failures)} of {len(sessions)} websockets failed: {failures[0]!r}")
    return opened


async def close_tabs(tabs):
    await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)


async def ask_confab(tab, stream, *, model, tokens):
    """Send one message in a new conversation and read until its reply's `message.done`."""
    event = {
        "type": "send",
        "conversation": None,
        "content": prompt(stream.key),
        "parent": None,
        "model": model,
        "params": {"max_tokens": tokens},
        "client_id": str(uuid.uuid4()),
    }
    stream.sent_at = time.monotonic()
    await tab.send(json.dumps(event))
    reply_id, last_seq = None, 0
    async for frame in tab:
        now = time.monotonic()
        stream.frames += 1
        event = json.loads(frame)
        kind = event["type"]
        if kind == "message.created" and event["message"]["role"] == "assistant":
            reply_id = event["message"]["id"]
        elif kind == "message.delta" and event["message"] == reply_id:
            stream.delta_frames += 1
            stream.check_seq(event["seq"], last_seq)
            last_seq = max(last_seq, event["seq"])
            if event.get("content"):
                stream.receive(now, event["content"])
        elif kind == "message.done" and event["message"]["id"] == reply_id:
            stream.finish(now, event["message"])
            return
        elif kind == "error":
            text = f"{event.get('code')}: {event.get('message')}"
            if event.get("code") in REFUSAL_CODES and reply_id is None:
                stream.refused = text
            else:
                stream.error = text
            return
    stream.error = "the websocket closed before message.done"


# From another process: a second tab of the same user on the other server (--redis)


@dataclass
class Watch(Stream):
    """The reply of a `Stream` of the same key, as a tab on the other server rebuilds it.

    `sent_at` is when it subscribed; text arrives first in the runner's snapshot (all that
    frames had carried by then), then in the frames the runner sends across the layer.
    """

    conversation: str | None = None
    live_from: float | None = None  # the runner's snapshot arrived: later text is live
    checkpoints: int = 0  # snapshots from the database (seq 0), before the runner's
    snapshots: int = 0  # the runner's own snapshots
    early_deltas: int = 0  # frames before the runner's snapshot: cannot be placed, ignored

    def catch_up(self, now, content):
        """A snapshot: the whole text so far, which must extend what was shown."""
        shown = self.text
        if not content.startswith(shown):
            self.error = "a snapshot disagrees with the text already shown"
        elif len(content) > len(shown):
            self.receive(now, content[len(shown) :])


async def watch_confab(tab, watch):
    """Wait for the user's new conversation, subscribe to it at once, rebuild its reply.

    By seq, as the page does: a snapshot replaces the text up to its seq, each later delta
    must carry the next seq. A gap is counted and the text goes on (the page would ask for
    a snapshot again), so a lost frame shows as lost text. Ends at `message.done`.
    """
    reply_id, last_seq = None, None  # last_seq None: waiting for the runner's snapshot
    async for frame in tab:
        now = time.monotonic()
        event = json.loads(frame)
        kind = event["type"]
        if watch.conversation is not None:
            watch.frames += 1
        if kind == "conversation.created" and watch.conversation is None:
            watch.conversation = event["conversation"]["id"]
            watch.sent_at = now
            await tab.send(json.dumps({"type": "subscribe", "conversation": watch.conversation}))
        elif kind == "message.snapshot" and event["message"]["role"] == "assistant":
            message = event["message"]
            reply_id = reply_id or message["id"]
            if message["id"] != reply_id:
                continue
            if event.get("checkpoint"):
                watch.checkpoints += 1
                if last_seq is None:
                    watch.catch_up(now, message["content"])
            elif last_seq is None or event["seq"] >= last_seq:
                watch.snapshots += 1
                watch.catch_up(now, message["content"])
                last_seq = event["seq"]
                if watch.live_from is None:
                    watch.live_from = now
        elif kind == "message.delta" and event["message"] == reply_id:
            if last_seq is None:
                watch.early_deltas += 1
                continue
            watch.delta_frames += 1
            watch.check_seq(event["seq"], last_seq)
            if event["seq"] > last_seq:
                last_seq = event["seq"]
                if event.get("content"):
                    watch.receive(now, event["content"])
        elif kind == "message.done" and event["message"]["id"] == reply_id:
            watch.finish(now, event["message"])
            return
        elif kind == "error":
            watch.error = f"{event.get('code')}: {event.get('message')}"
            return
    watch.error = "the websocket closed before message.done"


# Directly from the upstream: the floor


async def ask_upstream(client, stream, *, tokens):
    """The same request Confab makes, read with httpx as a minimal client would."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt(stream.key)}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": tokens,
    }
    stream.sent_at = time.monotonic()
    async with client.stream("POST", "chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            now = time.monotonic()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                stream.done_at = now
                return
            for choice in json.loads(data).get("choices") or ():
                if content := (choice.get("delta") or {}).get("content"):
                    stream.receive(now, content)
    stream.error = "the upstream closed before [DONE]"
