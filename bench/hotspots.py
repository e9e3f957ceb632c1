"""Where a profiled server spent its CPU, from the collapsed stacks `bench.relay --profile` keeps.

    python -m bench.hotspots bench/results/profiles/daphne-steady100.txt

Prints the share of samples by part of the relay (the first of PARTS whose marker is in
the stack), by package of the innermost frame (self time: aiohttp, autobahn, django, ...)
and the functions with the largest inclusive share. daphne runs Confab on Twisted's asyncio
reactor, on asyncio's own (Python) event loop: a sample whose innermost frame is the loop's
or the reactor's and that no other part claims is the loop itself (polling, socket reads,
callbacks). Under uvloop (uvicorn, before 956f7a5) the loop is C code that py-spy cannot
see into: there it shows as the loop's `run`, which counts the same way.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

PARTS = [
    ("database thread: opening and closing connections", ["get_new_connection", "Wrapper.close"]),
    ("database thread: settling a reply (save, ledger, HTML)",
     ["conversations/generation/settle.py", "_finish (conversations"]),
    ("database thread: checkpoints", ["_checkpoint (conversations", "_touch (conversations"]),
    ("database thread: accepting a send",
     ["_validate (conversations", "_prepare_send", "prepare_send (conversations",
      "_validate_and_prepare", "timed_validate"]),
    ("channels' close_old_connections hop before each layer message a socket handles",
     ["close_old_connections"]),
    ("database thread: other", ["DatabaseSyncToAsync", "concurrent/futures/thread.py"]),
    # Before the reading parts: a chunk is folded below ChatStream's frames.
    ("folding chunks into events (ChunkReader, json, Completion)",
     ["ChunkReader.", "Completion.add", "ChatStream._fold"]),
    ("reading the upstream: the HTTP client (httpx, httpx-aiohttp, aiohttp)",
     ["httpx_aiohttp/", "aiohttp/", "httpx/", "httpcore/", "h11/", "httpx_sse/", "anyio/"]),
    ("reading the upstream: ChatStream's own loop (deadlines, SSESplitter)",
     ["SSESplitter", "ChatStream.", "Generation._read"]),
    ("channel layer: group_send (channels_redis, redis-py)", ["RedisChannelLayer.group_send"]),
    ("channel layer: receive (channels_redis, redis-py)",
     ["RedisChannelLayer.receive", "RedisChannelLayer._clean_receive_backup"]),
    ("channel layer: other (channels_redis, redis-py, msgpack)",
     ["channels_redis/", "redis/", "msgpack/"]),
    ("relaying layer messages to sockets (ChatConsumer.relay)", ["ChatConsumer.relay"]),
    ("the consumer handling socket events (sends, subscribes; its loop side)",
     ["ChatConsumer.receive", "ChatConsumer.connect", "ChatConsumer.disconnect"]),
    # daphne: channels' send chain, daphne's reply handling, autobahn's framing, Twisted's
    # socket writes (each a writer added to the loop's selector, then removed once written);
    # uvicorn's websocket protocol and websockets in profiles before 956f7a5.
    ("websocket frames (hub, channels, daphne, autobahn, Twisted's socket writes)",
     ["Hub.publish", "Hub.deliver", "channels/", "daphne/ws_protocol.py", "handle_reply (daphne",
      "autobahn/", "twisted/internet/tcp.py", "twisted/internet/abstract.py",
      "uvicorn/protocols", "websockets/"]),
    ("runner (flusher, coalescing)",
     ["conversations/generation/runner.py", "conversations/runner.py"]),
    ("daphne's periodic checks of every connection",
     ["application_checker (daphne", "timeout_checker (daphne", "check_timeouts (daphne"]),
    # py-spy tells an idle thread apart only roughly: a loop with little to do shows here.
    ("event loop: in select() (polling, and waiting py-spy took for work)",
     ["Selector.select (selectors.py"]),
    ("event loop (asyncio or uvloop, Twisted's reactor, their I/O)",
     ["asyncio/", "selectors.py", "twisted/internet/asyncioreactor.py",
      "twisted/internet/base.py"]),
]  # fmt: skip
# The parts matched on the innermost frame only: every sample's stack passes through them.
INNERMOST_ONLY = ("event loop",)
# The outermost frame of a whole stack. py-spy, sampling without pausing the server, often
# reads only the inner frames of a stack: such a sample still counts for any part whose
# marker it shows, but never for the event loop, whose frames every stack ends in.
ROOTS = ("_run_module_as_main (", "<module> (", "Thread._bootstrap (")
CUT_SHORT = "unknown: a stack py-spy read only in part"
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
    whole = frames[0].startswith(ROOTS)
    for part, markers in PARTS:
        if part.startswith(INNERMOST_ONLY):
            if whole and any(marker in innermost for marker in markers):
                return part
        elif any(marker in stack for marker in markers):
            return part
    return "other" if whole else CUT_SHORT


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
