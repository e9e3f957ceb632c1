"""From what the clients saw and when the upstream wrote, the figures of one phase.

Delivery latency of a chunk = when the client had received all of its text (the first
frame whose running character count reaches the chunk's end) minus when the upstream
handed the chunk to its socket. No marker is needed in the text: each reply is a known
function of its key (bench.text), so the chunk boundaries are known.
"""

from itertools import accumulate

from bench.text import reply_tokens


def percentile(values, fraction):
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def mean(values):
    return sum(values) / len(values) if values else None


def lost_chunks(text, tokens):
    """Chunks not received intact and in order: those past the first wrong character."""
    expected = "".join(tokens)
    if text == expected:
        return 0
    intact = next(
        (i for i, (got, want) in enumerate(zip(text, expected, strict=False)) if got != want),
        min(len(text), len(expected)),
    )
    return sum(1 for end in accumulate(map(len, tokens)) if end > intact)


def delivery(stream, tokens, written):
    """(written at, latency) for each chunk of an intact stream."""
    ends = list(accumulate(map(len, tokens)))
    latencies, index = [], 0
    for arrived_at, received in stream.arrivals:
        while index < min(len(ends), len(written)) and ends[index] <= received:
            latencies.append((written[index], arrived_at - written[index]))
            index += 1
    return latencies


def all_live_window(timelines):
    """From the last stream's first chunk to the first stream's last: every stream writing."""
    chunks = [timeline["chunks"] for timeline in timelines.values() if timeline["chunks"]]
    if not chunks:
        return None
    start, end = max(c[0] for c in chunks), min(c[-1] for c in chunks)
    return (start, end) if start < end else None


def frame_rate(stream):
    """Delta frames per second after the first one (which goes out at once)."""
    if len(stream.arrivals) < 2:
        return 0.0
    span = stream.arrivals[-1][0] - stream.arrivals[0][0]
    return (stream.delta_frames - 1) / span if span > 0 else 0.0


def seconds_to_ms(value):
    return None if value is None else round(value * 1000, 2)


def summarise(all_streams, timelines, tokens):
    """Correctness, time to first token, delivery latency and frames of one phase's streams.

    Sends the server refused ("busy, try again") are counted apart and left out of the rest.
    """
    streams = [stream for stream in all_streams if stream.refused is None]
    lost = bad = errors = 0
    ttfts, latencies, durations, done_lags = [], [], [], []
    for stream in streams:
        expected = reply_tokens(stream.key, tokens)
        timeline = timelines.get(stream.key, {"chunks": [], "done": None})
        errors += stream.error is not None
        lost += lost_chunks(stream.text, expected)
        intact = stream.text == "".join(expected) and stream.final_text in (None, stream.text)
        bad += not intact
        if stream.arrivals:
            ttfts.append(stream.arrivals[0][0] - stream.sent_at)
        if intact and stream.error is None:
            latencies.extend(delivery(stream, expected, timeline["chunks"]))
            durations.append(stream.done_at - stream.sent_at)
            if timeline["done"] is not None:
                done_lags.append(stream.done_at - timeline["done"])

    window = all_live_window(timelines)
    live = [lag for written, lag in latencies if window and window[0] <= written <= window[1]]
    lags = [lag for _, lag in latencies]
    return {
        "streams": len(streams),
        "refused": len(all_streams) - len(streams),
        "errors": errors,
        "error_examples": sorted({s.error for s in streams if s.error})[:3],
        "lost_chunks": lost,
        "bad_replies": bad,
        "seq_gaps": sum(s.seq_gaps for s in streams),
        "seq_reorders": sum(s.seq_reorders for s in streams),
        "ttft_ms": {
            "p50": seconds_to_ms(percentile(ttfts, 0.5)),
            "p99": seconds_to_ms(percentile(ttfts, 0.99)),
        },
        "delivery_ms": {
            "p50": seconds_to_ms(percentile(lags, 0.5)),
            "p99": seconds_to_ms(percentile(lags, 0.99)),
            "p99_all_live": seconds_to_ms(percentile(live, 0.99)),
            "samples": len(lags),
        },
        "duration_s_mean": mean(durations),
        "done_after_upstream_done_ms_p99": seconds_to_ms(percentile(done_lags, 0.99)),
        "chunks_written": sum(len(t["chunks"]) for t in timelines.values()),
        "frames_per_reply": mean([s.frames for s in streams]),
        "delta_frames_per_reply": mean([s.delta_frames for s in streams]),
        "max_frames_per_s": round(max((frame_rate(s) for s in streams), default=0.0), 1),
    }


def pair_delivery(streams, watches, timelines, tokens):
    """Delivery latency at the sender and at the watching tab of the same reply, over the
    chunks written once the watcher had caught up (its runner snapshot), and per chunk how
    much later the watcher had it than the sender. Intact replies only, on both sides."""
    at_sender, at_watcher, behind = [], [], []
    watch_of = {watch.key: watch for watch in watches}
    for stream in streams:
        watch = watch_of.get(stream.key)
        if stream.refused or watch is None or watch.live_from is None:
            continue
        expected = reply_tokens(stream.key, tokens)
        whole = "".join(expected)
        if any(side.error or side.text != whole for side in (stream, watch)):
            continue
        written = timelines.get(stream.key, {"chunks": []})["chunks"]
        sender = delivery(stream, expected, written)
        watcher = delivery(watch, expected, written)
        # Both lists hold chunk 0, 1, ... in order; keep the live part.
        for (written_at, lag_a), (_, lag_b) in zip(sender, watcher, strict=False):
            if written_at >= watch.live_from:
                at_sender.append(lag_a)
                at_watcher.append(lag_b)
                behind.append(lag_b - lag_a)

    def figures(values):
        return {
            "p50": seconds_to_ms(percentile(values, 0.5)),
            "p99": seconds_to_ms(percentile(values, 0.99)),
        }

    return {
        "sender": figures(at_sender),
        "watcher": figures(at_watcher),
        "watcher_behind_sender": figures(behind),
        "samples": len(behind),
    }


def layer_change(before, after, call):
    return after.get("layer", {}).get(call, 0) - before.get("layer", {}).get(call, 0)


def layer_events_change(before, after):
    """Channel layer calls by the event carried ("group_send message.delta": n) between two
    snapshots of bench.server's counts."""
    old, new = before.get("layer_events", {}), after.get("layer_events", {})
    return {key: new[key] - old.get(key, 0) for key in sorted(new) if new[key] != old.get(key, 0)}


def per_reply(before, after, replies):
    """Database work per reply, from two snapshots of bench.server's counts."""

    def change(name):
        return (after[name] - before[name]) / replies

    statements = {
        kind: (count - before["statements"].get(kind, 0)) / replies
        for kind, count in after["statements"].items()
        if count != before["statements"].get(kind, 0)
    }
    writes = sum(v for k, v in statements.items() if k.split()[0] in ("INSERT", "UPDATE", "DELETE"))
    return {
        "queries": sum(statements.values()),
        "reads": sum(v for k, v in statements.items() if k.split()[0] == "SELECT"),
        "writes": writes,
        # A transaction starts with BEGIN; a write outside one commits by itself.
        "commits": statements.get("BEGIN", 0.0) + change("autocommit_writes"),
        "messages_created": statements.get("INSERT conversations_message", 0.0),
        "message_updates": statements.get("UPDATE conversations_message", 0.0),
        "connections_opened": change("connections"),
        "layer_group_sends": layer_change(before, after, "group_send") / replies,
        "layer_deliveries": layer_change(before, after, "send") / replies,
        "by_kind": dict(sorted(statements.items())),
        "accept": accept_change(before, after),
    }


def accept_change(before, after):
    """CPU per accepted send, in ms: the database hop, the loop's part (an upper bound:
    bench.server's `count_accepting`), and both."""
    was, now = before.get("accept", {}), after.get("accept", {})
    sends = now.get("sends", 0) - was.get("sends", 0)
    if not sends:
        return None
    database, loop = (
        (now.get(name, 0.0) - was.get(name, 0.0)) / sends * 1000
        for name in ("database_s", "loop_s")
    )
    return {"sends": sends, "database_ms": database, "loop_ms": loop, "ms": database + loop}


def ratio(value, floor):
    if value is None or not floor:
        return None
    return round(value / floor, 3)


def compare(floor, relay):
    """What Confab adds to the floor: the difference and the ratio of each figure."""
    figures = {
        "ttft_p50": (relay["ttft_ms"]["p50"], floor["ttft_ms"]["p50"]),
        "ttft_p99": (relay["ttft_ms"]["p99"], floor["ttft_ms"]["p99"]),
        "delivery_p50": (relay["delivery_ms"]["p50"], floor["delivery_ms"]["p50"]),
        "delivery_p99": (relay["delivery_ms"]["p99"], floor["delivery_ms"]["p99"]),
        "delivery_p99_all_live": (
            relay["delivery_ms"]["p99_all_live"],
            floor["delivery_ms"]["p99_all_live"],
        ),
        "cpu_per_1k_chunks": (relay["cpu_s_per_1k_chunks"], floor["cpu_s_per_1k_chunks"]),
    }
    added = {
        name: {
            "added": None if None in (value, base) else round(value - base, 2),
            "ratio": ratio(value, base),
        }
        for name, (value, base) in figures.items()
    }
    relay_s, floor_s = relay["duration_s_mean"], floor["duration_s_mean"]
    added["throughput"] = {"ratio": ratio(floor_s, relay_s)}
    return added
