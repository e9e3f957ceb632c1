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
        f"{relay['load_busy']:.0%}",
        f"{phase['floor']['other_programs_cores']:.2f} / {relay['other_programs_cores']:.2f}",
    ]


def cost_table(phases):
    header = [
        "phase", "N", "server CPU s / 1k chunks (×floor reader)", "µs / chunk", "ms / reply",
        "idle RSS MB", "peak RSS MB", "KB / stream", "frames / reply", "max frames/s",
        "message rows / reply", "message UPDATEs / reply", "writes / reply", "commits / reply",
        "queries / reply", "layer messages / reply", "load core busy",
        "other programs, cores (floor / relay)",
    ]  # fmt: skip
    return table(header, [cost_row(phase) for phase in phases])


def cores(numbers):
    return ",".join(map(str, numbers))


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
        ]
    )


def steady_phases(result):
    return [phase for phase in result["phases"] if phase["kind"] == "steady"]


def capacity(result):
    """The largest N tested up to which every phase meets the delivery and throughput goal."""
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
    return " | ".join(parts) + f" -> {path}"
