"""Where a profiled server spent its CPU, from the collapsed stacks `bench.relay --profile` keeps.

    python -m bench.hotspots bench/results/profiles/uvicorn-steady100.txt

Prints the share of samples by part of the relay (the first of PARTS whose marker is in
the stack), by package of the innermost frame (self time: httpx, h11, django, ...) and the
functions with the largest inclusive share. Under uvloop the event loop is C code that
py-spy cannot see into: a sample whose innermost Python frame is the loop's `run` is the
loop itself (polling, socket reads and writes, callbacks).
"""

import argparse
import re
from collections import Counter
from pathlib import Path

PARTS = [
    ("database thread: opening and closing connections", ["get_new_connection", "Wrapper.close"]),
    ("database thread: finishing a reply (save, ledger, HTML)", ["_finish (conversations"]),
    ("database thread: checkpoints", ["_checkpoint (conversations", "_touch (conversations"]),
    ("database thread: accepting a send",
     ["_validate (conversations", "_prepare_send", "_validate_and_prepare", "timed_validate"]),
    ("channels' close_old_connections hop before each layer message a socket handles",
     ["close_old_connections"]),
    ("database thread: other", ["DatabaseSyncToAsync", "concurrent/futures/thread.py"]),
    ("reading the upstream (httpx, httpcore, h11, httpx-sse, anyio)",
     ["httpcore/", "httpx/", "h11/", "httpx_sse/", "anyio/"]),
    ("reading the upstream (aiohttp, the SSE splitter)", ["aiohttp/", "SSESplitter"]),
    ("folding chunks (json, ChatStream._fold)", ["ChatStream._fold", "ChatStream.__aiter__"]),
    ("channel layer: group_send (channels_redis, redis-py)", ["RedisChannelLayer.group_send"]),
    ("channel layer: receive (channels_redis, redis-py)",
     ["RedisChannelLayer.receive", "RedisChannelLayer._clean_receive_backup"]),
    ("channel layer: other (channels_redis, redis-py, msgpack)",
     ["channels_redis/", "redis/", "msgpack/"]),
    ("relaying layer messages to sockets (ChatConsumer.relay)", ["ChatConsumer.relay"]),
    ("sending websocket frames (hub, channels, uvicorn, websockets)",
     ["Hub.publish", "channels/", "uvicorn/protocols", "websockets/"]),
    ("runner (flusher, coalescing)", ["conversations/runner.py"]),
    ("event loop (uvloop, its I/O)", ["Runner.run (asyncio/runners.py"]),
]  # fmt: skip
IDLE_WORKER = "_worker (concurrent/futures/thread.py"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+)(:\d+)?\)$")


def read_stacks(path):
    """[(frames outermost first, samples)] from py-spy's raw (collapsed) format, without
    the samples of an idle thread-pool worker (py-spy --nonblocking counts some as busy)."""
    stacks = []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and count.isdigit() and not frames[-1].startswith(IDLE_WORKER):
            stacks.append((frames, int(count)))
    return stacks


def package_of(frame):
    """The top-level package (or module) of a frame: 'httpx', 'asyncio', 'conversations'..."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    name = match["file"].split("/")[0]
    return name.removesuffix(".py").removesuffix(".pyx")


def function_of(frame):
    match = FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def part_of(frames):
    stack = ";".join(frames)
    innermost = frames[-1]
    for part, markers in PARTS:
        if part.startswith("event loop"):
            if any(marker in innermost for marker in markers):
                return part
        elif any(marker in stack for marker in markers):
            return part
    return "other"


def by_part(stacks):
    total = sum(count for _, count in stacks) or 1
    parts = Counter()
    for frames, count in stacks:
        parts[part_of(frames)] += count / total
    return parts


def shares(stacks):
    """(self share by package, inclusive share by function), each as a Counter of fractions."""
    total = sum(count for _, count in stacks) or 1
    by_package, by_function = Counter(), Counter()
    for frames, count in stacks:
        by_package[package_of(frames[-1])] += count / total
        for function in {function_of(frame) for frame in frames}:
            by_function[function] += count / total
    return by_package, by_function


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = read_stacks(args.stacks)
    print(f"{sum(count for _, count in stacks)} samples.\nBy part of the relay:")
    for part, share in by_part(stacks).most_common():
        print(f"  {share:6.1%}  {part}")
    by_package, by_function = shares(stacks)
    print("\nSelf time by package (innermost frame):")
    for package, share in by_package.most_common(args.top):
        print(f"  {share:6.1%}  {package}")
    print("\nInclusive time by function:")
    for function, share in by_function.most_common(args.top):
        print(f"  {share:6.1%}  {function}")


if __name__ == "__main__":
    main()
