"""The tables and the one-line summary of a run, in Markdown (docs/performance.md takes them)."""

# The capacity goal of issue 7: added p99 delivery latency within the coalescing window plus
# this much, throughput at least this share of the floor, and nothing lost.
DELIVERY_SLACK_MS = 25
MIN_THROUGHPUT = 0.99


def number(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def against_floor(value, comparison, digits=1):
    """'12.3 (+10.1, ×5.60)': Confab's figure, what it adds to the floor, and the ratio."""
    if value is None:
        return "–"
    parts = []
    if comparison.get("added") is not None:
        parts.append(f"{comparison['added']:+.{digits}f}")
    if (ratio := comparison.get("ratio")) is not None:
        parts.append(f"×{ratio:.0f}" if ratio >= 10 else f"×{ratio:.2f}")
    return f"{value:.{digits}f} ({', '.join(parts)})" if parts else f"{value:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def problems(relay):
    return relay["lost_chunks"] + relay["seq_reorders"] + relay["bad_replies"] + relay["errors"]


def latency_row(phase):
    relay, floor, added = phase["relay"], phase["floor"], phase["added"]
    streaming = phase["kind"] != "start"  # one-token replies have no stream to speak of
    return [
        phase["name"],
        phase["clients"],
        relay["refused"],
        against_floor(relay["ttft_ms"]["p50"], added["ttft_p50"]),
        against_floor(relay["ttft_ms"]["p99"], added["ttft_p99"]),
        against_floor(relay["delivery_ms"]["p50"], added["delivery_p50"]) if streaming else "–",
        against_floor(relay["delivery_ms"]["p99"], added["delivery_p99"]) if streaming else "–",
        against_floor(relay["delivery_ms"]["p99_all_live"], added["delivery_p99_all_live"])
        if streaming
        else "–",
        number(relay["done_after_upstream_done_ms_p99"]),
        number(added["throughput"]["ratio"], 3) if streaming else "–",
        f"{floor['reader_busy']:.0%}",
        f"{relay['lost_chunks']} / {relay['seq_reorders']} / {relay['bad_replies']}"
        f" / {relay['errors']}",
    ]


def latency_table(phases):
    header = [
        "phase", "N", "refused (busy)", "TTFT p50 ms", "TTFT p99 ms", "delivery p50 ms",
        "delivery p99 ms", "delivery p99 ms, all N live", "done after [DONE] p99 ms",
        "throughput ×floor", "floor reader core busy", "lost / reordered / bad / errors",
    ]  # fmt: skip
    return table(header, [latency_row(phase) for phase in phases])


def cost_row(phase):
    relay, database = phase["relay"], phase["relay"]["database"]
    return [
        phase["name"],
        phase["clients"],
        against_floor(relay["cpu_s_per_1k_chunks"], phase["added"]["cpu_per_1k_chunks"], 3),
        number(relay["cpu_us_per_chunk"], 0),
        number(relay["cpu_ms_per_reply"]),
        number(relay["rss_mb"]["idle"]),
        number(relay["rss_mb"]["peak"]),
        number(relay["rss_kb_per_stream"], 0),
        number(relay["frames_per_reply"]),
        number(relay["max_frames_per_s"]),
        number(database["messages_created"]),
        number(database["message_updates"]),
        number(database["writes"]),
        number(database["commits"]),
        number(database["queries"]),
        number(database["layer_deliveries"]),
        accept_text(database.get("accept")),
        f"{relay['load_busy']:.0%}",
        f"{phase['floor']['other_programs_cores']:.2f} / {relay['other_programs_cores']:.2f}",
    ]


def accept_text(accept):
    if not accept:
        return "–"
    return f"{number(accept['ms'])} ({number(accept['database_ms'])} + {number(accept['loop_ms'])})"


def cost_table(phases):
    header = [
        "phase", "N", "server CPU s / 1k chunks (×floor reader)", "µs / chunk", "ms / reply",
        "idle RSS MB", "peak RSS MB", "KB / stream", "frames / reply", "max frames/s",
        "message rows / reply", "message UPDATEs / reply", "writes / reply", "commits / reply",
        "queries / reply", "layer messages / reply",
        "accept a send: CPU ms (database hop + loop, ≤)", "load core busy",
        "other programs, cores (floor / relay)",
    ]  # fmt: skip
    return table(header, [cost_row(phase) for phase in phases])


def cores(numbers):
    return ",".join(map(str, numbers))


# Several processes (--redis): a sender and a watching tab per user


def side_problems(side):
    names = ("lost_chunks", "seq_reorders", "bad_replies", "errors")
    return " / ".join(str(side[name]) for name in names)


def pair(low, high, digits=1):
    return f"{number(low, digits)} / {number(high, digits)}"


def where(phase):
    return "one process" if phase["processes"] == 1 else "A → Redis → B"


def pair_latency_row(phase):
    sender, watcher, live = phase["sender"], phase["watcher"], phase["live_delivery_ms"]
    return [
        phase["clients"],
        where(phase),
        side_problems(sender),
        side_problems(watcher),
        watcher["never_caught_up"],
        pair(sender["ttft_ms"]["p50"], sender["ttft_ms"]["p99"]),
        pair(watcher["catch_up_ms"]["p50"], watcher["catch_up_ms"]["p99"]),
        pair(live["sender"]["p50"], live["sender"]["p99"]),
        pair(live["watcher"]["p50"], live["watcher"]["p99"]),
        pair(live["watcher_behind_sender"]["p50"], live["watcher_behind_sender"]["p99"]),
        pair(sender["done_after_upstream_done_ms_p99"], watcher["done_after_upstream_done_ms_p99"]),
    ]


def pair_latency_table(pairs):
    header = [
        "N", "watchers on", "sender lost / reordered / bad / errors",
        "watcher lost / reordered / bad / errors", "watchers never caught up",
        "sender TTFT p50 / p99 ms",
        "watcher catch-up p50 / p99 ms", "delivery at sender p50 / p99 ms",
        "delivery at watcher p50 / p99 ms", "watcher behind sender p50 / p99 ms",
        "done after [DONE] p99 ms, sender / watcher",
    ]  # fmt: skip
    return table(header, [pair_latency_row(phase) for phase in pairs])


def pair_cost_row(phase):
    servers, cpu = phase["servers"], phase["cpu"]
    a, b = servers["a"], servers.get("b")
    alone = phase.get("alone", {}).get("cpu_s_per_1k_chunks")
    services = cpu["service_us_per_watcher_frame"] or {}
    frame_layer = a["layer_per_watcher_frame"]
    received_b = b["layer_per_watcher_frame"]["receive"] if b else None
    per_reply = {
        call: sum(server["layer_per_reply"][call] for server in servers.values())
        for call in ("group_send", "send", "receive")
    }
    return [
        phase["clients"],
        where(phase),
        number(alone, 3),
        number(a["cpu_s_per_1k_chunks"], 3),
        number(b["cpu_s_per_1k_chunks"], 3) if b else "–",
        number(cpu["servers_s_per_1k_chunks"], 3),
        number(cpu["servers_us_per_watcher_frame"], 0),
        number(cpu.get("added_us_per_watcher_frame"), 0),
        pair(services.get("redis"), services.get("postgres"), 0) if services else "–",
        number(frame_layer["group_send"] + frame_layer["send"], 2),
        number(frame_layer["receive"], 2),
        number(received_b, 2) if b else "–",
        " / ".join(number(per_reply[call]) for call in ("group_send", "send", "receive")),
        " / ".join(str(server["layer"]["dropped_over_capacity"]) for server in servers.values()),
        number(phase["watcher"]["delta_frames_per_reply"]),
        " / ".join(number(server["rss_mb"]["peak"]) for server in servers.values()),
        f"{cpu['other_programs_cores']:.2f}",
    ]


def pair_cost_table(pairs):
    header = [
        "N", "watchers on", "one process, senders only: CPU s / 1k chunks",
        "A CPU s / 1k chunks", "B CPU s / 1k chunks", "A + B CPU s / 1k chunks",
        "A + B µs / watcher frame", "added µs / watcher frame (vs senders only)",
        "Redis / PostgreSQL µs / watcher frame", "layer messages sent / frame (A)",
        "layer messages received / frame, A", "layer messages received / frame, B",
        "layer group_send / send / receive per reply, all processes",
        "layer messages dropped or processes given up, channel full (A / B)",
        "frames / reply at watcher", "peak RSS MB (A / B)", "other programs, cores",
    ]  # fmt: skip
    return table(header, [pair_cost_row(phase) for phase in pairs])


def render_pairs(result):
    pairs = result.get("pairs")
    if not pairs:
        return []
    redis = result["config"]["redis"]
    placement = (
        f"A on core {cores(redis['a_cores'])}, B on core {cores(redis['b_cores'])}"
        if redis["a_cores"] != redis["b_cores"]
        else f"A and B on core {cores(redis['a_cores'])}"
    )
    return [
        "Several processes: N senders, each user's second tab subscribed to the sender's "
        f"conversation ({placement}, PostgreSQL and Redis not pinned; the one-process rows: "
        "SQLite and the in-memory layer). Delivery: chunks written after the watcher caught up.",
        pair_latency_table(pairs),
        "Several processes, cost: CPU per 1,000 upstream chunks and per frame a watcher got; "
        "layer messages carrying the frames themselves per frame, and all per reply.",
        pair_cost_table(pairs),
    ]


def render(result):
    config, machine = result["config"], result["machine"]
    pinning = (
        f"server on core {cores(config['server_cores'])}, load on {cores(config['load_cores'])}"
        if config["pinned"]
        else "not pinned (fewer than 2 cores)"
    )
    return "\n\n".join(
        [
            f"Confab behind {config['server']}, {config['tokens']}-chunk replies at "
            f"{config['rate']:g} chunks/s, {pinning}; {machine['cpu']}, {machine['cores']} cores.",
            "Latency: Confab's figure (+ what it adds to the floor, × the floor).",
            latency_table(result["phases"]),
            "Cost: server CPU against the floor's httpx reader; database counts per reply.",
            cost_table(result["phases"]),
            *render_pairs(result),
        ]
    )


def steady_phases(result):
    return [phase for phase in result["phases"] if phase["kind"] == "steady"]


def capacity(result):
    """The largest N tested up to which every phase serves all its streams (none refused by
    the admission cap) and meets the delivery and throughput goal."""
    window_ms = result["config"]["frame_interval_ms"]
    met = None
    steady = sorted(
        (p for p in result["phases"] if p["kind"] == "steady"), key=lambda p: p["clients"]
    )
    for phase in steady:
        added = phase["added"]["delivery_p99"]["added"]
        throughput = phase["added"]["throughput"]["ratio"]
        if (
            problems(phase["relay"])
            or phase["relay"]["refused"]
            or added is None
            or added > window_ms + DELIVERY_SLACK_MS
            or throughput is None
            or throughput < MIN_THROUGHPUT
        ):
            break
        met = phase["clients"]
    return met


def capacity_text(result):
    met = capacity(result)
    return f"capacity {met} streams" if met else "capacity: no N tested meets the goal"


def summary_line(result, path):
    """The last line a run prints: correctness first, then the headline figures."""
    phases = result["phases"]
    failed = sum(problems(phase["relay"]) for phase in phases)
    for phase in result.get("pairs", ()):
        failed += problems(phase["sender"]) + problems(phase["watcher"])
    per_chunk = {
        p["clients"]: p["relay"]["cpu_us_per_chunk"] for p in phases if p["kind"] == "steady"
    }
    parts = ["bench: " + ("OK" if not failed else f"FAILED ({failed} lost/reordered/bad/errors)")]
    if not result["config"]["quick"]:  # short replies say nothing about capacity
        parts.append(capacity_text(result))
    per_chunk_text = ", ".join(f"N={n} {number(us, 0)}" for n, us in per_chunk.items())
    parts.append(f"CPU µs/chunk {per_chunk_text}")
    for phase in phases:
        if phase["kind"] == "burst":
            parts.append(
                f"burst of {phase['clients']} in {phase['ramp']:g} s: {phase['relay']['errors']}"
                f" failures, TTFT +{number(phase['added']['ttft_p99']['added'])} ms p99"
            )
        if phase["kind"] == "start":
            parts.append(f"{number(phase['relay']['cpu_ms_per_reply'])} ms CPU per 1-token reply")
            if accept := phase["relay"]["database"].get("accept"):
                parts.append(f"{number(accept['ms'])} ms CPU to accept a send")
    parts += [pair_summary(phase) for phase in result.get("pairs", ()) if phase["processes"] > 1]
    return " | ".join(parts) + f" -> {path}"


def pair_summary(phase):
    """'Redis N=100: … layer 0.05 sent + 0.05 received per frame, A+B 420 µs/frame, …'"""
    a, b, cpu = phase["servers"]["a"], phase["servers"]["b"], phase["cpu"]
    per_frame = a["layer_per_watcher_frame"]
    received = per_frame["receive"] + b["layer_per_watcher_frame"]["receive"]
    added = cpu.get("added_us_per_watcher_frame")
    behind = phase["live_delivery_ms"]["watcher_behind_sender"]["p99"]
    watcher = phase["watcher"]
    dropped = sum(server["layer"]["dropped_over_capacity"] for server in phase["servers"].values())
    return (
        f"Redis N={phase['clients']}: watchers {side_problems(watcher)} lost/reordered/bad/errors"
        f" ({watcher['never_caught_up']} never caught up), layer"
        f" {number(per_frame['group_send'] + per_frame['send'], 2)} sent"
        f" + {number(received, 2)} received"
        f" per frame ({dropped} dropped, channel full),"
        f" A+B {number(cpu['servers_us_per_watcher_frame'], 0)} µs CPU/frame"
        + (f" (+{number(added, 0)} over one process)" if added is not None else "")
        + f", watcher p99 +{number(behind)} ms behind sender"
    )
