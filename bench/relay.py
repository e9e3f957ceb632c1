"""What relaying a streamed reply through Confab costs, against reading the upstream directly.

    .venv/bin/python -m bench.relay              # N = 1, 50, 100, 200, 300, 500; burst; sends
    .venv/bin/python -m bench.relay --quick      # N = 1 and 20, short replies, under 30 s
    .venv/bin/python -m bench.relay --commit HEAD  # a commit (git archive), not the worktree
    .venv/bin/python -m bench.relay --clients 100 --burst 0 --starts 0 --profile DIR  # py-spy
    .venv/bin/python -m bench.relay --redis      # also two processes on PostgreSQL + Redis

How it measures (docs/performance.md has the method, the latest table and its reading):

- A fake upstream (bench.upstream) runs in its own process, pinned to the load core(s). It
  streams 50 content chunks/s per reply (English, Chinese and code; a usage chunk; [DONE])
  and logs when it wrote each chunk, on the machine-wide monotonic clock.
- Per phase, the *floor* first: N httpx clients read the upstream directly, from the core
  the server will use (idle then). Then a fresh Confab process (bench.server: the `serve`
  command, one daphne worker, SQLite in a temporary CONFAB_VAR_DIR) is started on its own
  core; after one warm-up reply, N websocket clients, each signed in as a distinct user,
  each send one message in a new conversation and read until `message.done`.
- Sends are spread evenly over --ramp seconds (half a reply by default, so every stream
  overlaps every other for half a reply); the burst phase sends --burst messages within
  one second; the start phase sends --starts one-token messages to price a send.
- With --redis, for each N of --redis (50 and 100 by default), after the phases above:
  each sender's user also opens a second tab that subscribes to the sender's new
  conversation as soon as `conversation.created` reaches it, first in the same process
  (SQLite, in-memory layer), then with two processes A and B on PostgreSQL + Redis, the
  senders on A and the watchers on B, so that every frame crosses Redis (bench.cluster
  makes and removes the database and flushes the Redis db).
- Added TTFT is measured from the send to the first text; delivery latency per chunk is
  when its text reached the client minus when the upstream wrote it (bench.stats). Server
  CPU is utime + stime from /proc, peak RSS is VmHWM of the fresh process, and database
  statements are counted inside the server by an execute wrapper (bench.server).

Every wait is bounded; everything listens on 127.0.0.1. The JSON result goes to --output,
the tables and then a one-line summary (last) to stdout. The exit status is 1 only when a
reply was lost, reordered, wrong or failed: never because of a time.
"""

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import httpx

from bench import procs
from bench.clients import (
    Stream,
    Watch,
    ask_confab,
    ask_upstream,
    close_tabs,
    open_tabs,
    run_streams,
    watch_confab,
)
from bench.cluster import POSTGRES, REDIS_URL, ServiceClock, Services
from bench.report import render, summary_line
from bench.stats import (
    compare,
    layer_change,
    layer_events_change,
    pair_delivery,
    per_reply,
    percentile,
    seconds_to_ms,
    summarise,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# What `manage.py serve` runs Confab on (since 956f7a5; uvicorn before): the name in the
# result, the report and the profiles' file names.
SERVER = "daphne"
API_KEY = "sk-bench-0000-not-a-secret"
WARM_UP_TOKENS = 5
START_TIMEOUT_S = 60
COUNTS_TIMEOUT_S = 10
LAYER_CALLS = ("group_send", "send", "receive")


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # "steady", "burst", "start"; "pair": a sender and a watching tab per user
    clients: int
    tokens: int
    ramp: float  # sends are spread evenly over this many seconds

    @property
    def tag(self):
        """A short name for stream keys: letters, digits, dots and dashes only."""
        return f"{self.kind}{self.clients}"


@dataclass(frozen=True)
class PairPhase(Phase):
    """N senders and, per sender, a tab of the same user subscribed to its conversation.

    processes 1: both tabs on one server (SQLite, in-memory layer); 2: the senders on A,
    the watchers on B, PostgreSQL and Redis between them.
    """

    processes: int = 1

    @property
    def tag(self):
        return f"pair{self.processes}p{self.clients}"


def plan(args):
    """The phases of a run, smallest first; with --redis, one process alone for each of its N
    too, for comparison."""
    ramp = args.ramp if args.ramp is not None else args.tokens / args.rate / 2
    steady = sorted(set(args.clients) | set(args.redis or ()))
    phases = [Phase(f"N={n}", "steady", n, args.tokens, ramp) for n in steady]
    if args.burst:
        phases.append(Phase(f"burst {args.burst}/s", "burst", args.burst, args.tokens, 1.0))
    if args.starts:
        phases.append(Phase("1-token sends", "start", args.starts, 1, args.starts / 20))
    return phases


def plan_pairs(args):
    """With --redis: per N, the watching tabs in the same process, then in another."""
    ramp = args.ramp if args.ramp is not None else args.tokens / args.rate / 2
    return [
        PairPhase(name, "pair", n, args.tokens, ramp, processes=processes)
        for n in args.redis or ()
        for processes, name in ((1, f"N={n}, watchers in-process"), (2, f"N={n}, Redis A→B"))
    ]


def server_env(app, workdir, upstream_url):
    """The environment of a user's deployment: SQLite under a fresh var/, one process.

    The app's own tree comes first on the path, then this one's, for `bench` itself.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        PYTHONPATH=os.pathsep.join(dict.fromkeys([str(app), str(ROOT)])),
        CONFAB_VAR_DIR=str(workdir / "var"),
        OPENAI_BASE_URL=upstream_url,
        OPENAI_API_KEY=API_KEY,
        DJANGO_DEBUG="False",
        DJANGO_SETTINGS_MODULE="chatsite.settings",
    )
    return env


class ConfabServer:
    """A fresh Confab process on its own core, for one phase."""

    def __init__(self, *, app, env, cores, workdir, tag):
        self.app = app
        self.env = env
        self.cores = cores
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.counts_path = workdir / f"counts-{tag}.json"
        self.log_path = workdir / f"server-{tag}.log"
        self.process = None

    @property
    def pid(self):
        return self.process.pid

    async def __aenter__(self):
        command = [sys.executable, "-m", "bench.server", "--port", str(self.port)]
        command += ["--counts", str(self.counts_path)]
        with self.log_path.open("w") as log:
            self.process = procs.start(
                command, cores=self.cores, env=self.env, cwd=self.app, log=log
            )
        try:
            await self._wait_until_ready()
        except BaseException:
            procs.stop(self.process)
            raise
        return self

    async def __aexit__(self, *exc_info):
        procs.stop(self.process)

    async def _wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/accounts/login/")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("Confab did not start:\n" + self.log_tail())

    async def counts(self):
        """The server's query counts so far (bench.server writes them on SIGUSR1)."""
        self.counts_path.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + COUNTS_TIMEOUT_S
        while not self.counts_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not write its query counts")
            await asyncio.sleep(0.02)
        return json.loads(self.counts_path.read_text())

    def log_tail(self, lines=30):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Bench:
    def __init__(self, args, workdir, app):
        self.args = args
        self.workdir = workdir
        self.app = app  # the Confab tree that runs: this one, or a commit unpacked
        self.cores = procs.Cores.split()
        self.upstream = None
        self.upstream_url = None
        self.env = None
        self.model = None
        self.sessions = []
        # --redis: PostgreSQL and Redis, their users and sessions, made on first use.
        self.services = None
        self.cluster_env = None
        self.cluster_model = None
        self.cluster_sessions = []

    # Setting up

    def start_upstream(self):
        command = [sys.executable, "-m", "bench.upstream", "--rate", str(self.args.rate)]
        command += ["--tokens", str(self.args.tokens)]
        self.upstream = procs.start(command, cores=self.cores.load, cwd=ROOT)
        port = procs.wait_for_line(self.upstream, "port ", timeout=15).split()[1]
        self.upstream_url = f"http://127.0.0.1:{port}/v1"

    def prepare_database(self, users):
        """Migrate a fresh SQLite database and create one signed-in user per client."""
        self.env = server_env(self.app, self.workdir, self.upstream_url)
        self.model, self.sessions = self.seed(self.env, users)

    def seed(self, env, users):
        """Migrate the database of `env`, make `users` signed-in users: (model, sessions)."""
        manage = [sys.executable, str(self.app / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], **self._tool_options(env))
        seed = [sys.executable, "-m", "bench.seed", "--users", str(users)]
        output = subprocess.run(seed, **self._tool_options(env)).stdout
        seeded = json.loads(output.splitlines()[-1])
        return seeded["model"], seeded["sessions"]

    def prepare_cluster(self, users):
        """PostgreSQL + Redis (fresh database, flushed db), migrated and seeded, once."""
        if self.services is not None:
            return
        self.services = Services(self.args.postgres, self.args.redis_url).open()
        self.cluster_env = {
            **server_env(self.app, self.workdir, self.upstream_url),
            **self.services.env(),
            # Every process of a deployment shares the key: sessions are signed with it.
            "DJANGO_SECRET_KEY": "bench-" + os.urandom(16).hex(),
        }
        self.cluster_model, self.cluster_sessions = self.seed(self.cluster_env, users)

    def _tool_options(self, env=None):
        return {
            "env": env or self.env,
            "cwd": self.app,
            "check": True,
            "capture_output": True,
            "text": True,
            "timeout": 300,
        }

    def close(self):
        try:
            if self.upstream is not None:
                procs.stop(self.upstream)
        finally:
            if self.services is not None:
                self.services.close()

    # Measuring

    async def measure(self, phase):
        floor = await self.measure_floor(phase)
        relay = await self.measure_relay(phase)
        return {**asdict(phase), "floor": floor, "relay": relay, "added": compare(floor, relay)}

    async def measure_floor(self, phase):
        """N clients reading the upstream directly, on the server's core (idle meanwhile)."""
        streams = [Stream(f"{phase.tag}-floor-{i}") for i in range(phase.clients)]
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        os.sched_setaffinity(0, self.cores.server)
        try:
            async with httpx.AsyncClient(
                base_url=self.upstream_url + "/", timeout=60, limits=limits
            ) as client:
                await self.warm_up_floor(client, phase)
                clock = procs.CpuClock(reader=os.getpid(), upstream=self.upstream.pid)
                ask = partial(ask_upstream, client, tokens=phase.tokens)
                await run_streams(streams, ask, ramp=phase.ramp, time_limit=self.time_limit(phase))
                cpu = clock.read()
        finally:
            os.sched_setaffinity(0, self.cores.load)
        summary = summarise(streams, await self.timelines(streams), phase.tokens)
        summary.update(cpu_figures(cpu["reader"], summary))
        summary["load_busy"] = cpu["upstream"] / cpu["wall"] / len(self.cores.load)
        summary["reader_busy"] = cpu["reader"] / cpu["wall"] / len(self.cores.server)
        summary["other_programs_cores"] = cpu["others"]
        return summary

    async def measure_relay(self, phase):
        """N signed-in tabs sending through a fresh Confab process."""
        streams = [Stream(f"{phase.tag}-relay-{i}") for i in range(phase.clients)]
        async with self.confab_server(phase) as server:
            await self.warm_up(server, phase)
            idle_kb = procs.memory_kb(server.pid)["VmRSS"]
            cpu, counts_before, counts_after = await self.relay(server, streams, phase)
            peak_kb = procs.memory_kb(server.pid)["VmHWM"]
        summary = summarise(streams, await self.timelines(streams), phase.tokens)
        summary.update(cpu_figures(cpu["server"], summary))
        summary["load_busy"] = (cpu["load"] + cpu["upstream"]) / cpu["wall"] / len(self.cores.load)
        summary["other_programs_cores"] = cpu["others"]
        summary["rss_mb"] = {"idle": idle_kb / 1024, "peak": peak_kb / 1024}
        served = max(summary["streams"], 1)
        summary["rss_kb_per_stream"] = (peak_kb - idle_kb) / served
        summary["database"] = per_reply(counts_before, counts_after, served)
        return summary

    def confab_server(self, phase):
        return ConfabServer(
            app=self.app,
            env=self.env,
            cores=self.cores.server,
            workdir=self.workdir,
            tag=phase.tag,
        )

    async def relay(self, server, streams, phase):
        """Open the tabs, then send and read: CPU and query counts cover just the latter."""
        tabs = await open_tabs(server.url, self.sessions[: phase.clients], time_limit=60)
        tab_of = {stream.key: tab for stream, tab in zip(streams, tabs, strict=True)}

        async def ask(stream):
            await ask_confab(tab_of[stream.key], stream, model=self.model, tokens=phase.tokens)

        try:
            counts_before = await server.counts()
            clock = procs.CpuClock(server=server.pid, load=os.getpid(), upstream=self.upstream.pid)
            with self.profiling(server, phase):
                await run_streams(streams, ask, ramp=phase.ramp, time_limit=self.time_limit(phase))
            cpu = clock.read()
            return cpu, counts_before, await server.counts()
        finally:
            await close_tabs(tabs)

    def profiling(self, server, phase, name=""):
        if self.args.profile is None:
            return contextlib.nullcontext()
        output = self.args.profile / f"{SERVER}-{phase.tag}{name}.txt"
        return procs.sampling_profile(server.pid, output, cores=self.cores.load)

    # Two tabs per user: the sender, and a tab that subscribes to its conversation (--redis)

    async def measure_pair(self, phase, alone):
        """Senders on server A, a watching tab per sender on B (A itself for one process)."""
        streams = [Stream(f"{phase.tag}-{i}") for i in range(phase.clients)]
        watches = [Watch(stream.key) for stream in streams]
        async with contextlib.AsyncExitStack() as stack:
            if phase.processes == 1:
                env, model, sessions = self.env, self.model, self.sessions
                a = b = await stack.enter_async_context(self.pair_server(phase, "", env))
            else:
                self.prepare_cluster(users=max(self.args.redis))
                env, model = self.cluster_env, self.cluster_model
                sessions = self.cluster_sessions
                a_cores, b_cores = self.pair_cores()
                a = await stack.enter_async_context(self.pair_server(phase, "a", env, a_cores))
                b = await stack.enter_async_context(self.pair_server(phase, "b", env, b_cores))
            servers = {"a": a} if a is b else {"a": a, "b": b}
            await self.warm_up_pair(a, b, model, sessions[0])
            idle_kb = {name: procs.memory_kb(s.pid)["VmRSS"] for name, s in servers.items()}
            measured = await self.relay_pair(servers, streams, watches, phase, model, sessions)
            peak_kb = {name: procs.memory_kb(s.pid)["VmHWM"] for name, s in servers.items()}
        timelines = await self.timelines(streams)
        return pair_result(phase, streams, watches, timelines, measured, idle_kb, peak_kb, alone)

    def pair_cores(self):
        """Where A and B run: a core each (default; B beside the load), or both on the
        server core."""
        if self.args.redis_cores == "split" and self.cores.pinned:
            return self.cores.server, self.cores.load
        return self.cores.server, self.cores.server

    def pair_server(self, phase, name, env, cores=None):
        return ConfabServer(
            app=self.app,
            env={**env, "CONFAB_VAR_DIR": str(self.workdir / f"var{name}")} if name else env,
            cores=cores or self.cores.server,
            workdir=self.workdir,
            tag=f"{phase.tag}{name}",
        )

    async def warm_up_pair(self, a, b, model, session):
        """One short reply sent on A and watched from B, so both paths are warm."""
        stream, watch = Stream("pair-warm"), Watch("pair-warm")
        tabs = await open_tabs(a.url, [session], time_limit=30)
        tabs += await open_tabs(b.url, [session], time_limit=30)
        try:
            await asyncio.gather(
                run_streams([watch], partial(watch_confab, tabs[1]), ramp=0, time_limit=30),
                run_streams(
                    [stream],
                    partial(ask_confab, tabs[0], model=model, tokens=WARM_UP_TOKENS),
                    ramp=0,
                    time_limit=30,
                ),
            )
        finally:
            await close_tabs(tabs)
        await self.timelines([stream])
        if stream.error or watch.error:
            raise RuntimeError(
                f"the warm-up reply failed: {stream.error or watch.error}\n{a.log_tail()}"
                + ("" if a is b else f"\n{b.log_tail()}")
            )

    async def relay_pair(self, servers, streams, watches, phase, model, sessions):
        """Open both tabs of every user, then send on A and watch on B; CPU and counts of
        just the latter."""
        a, b = servers["a"], servers.get("b", servers["a"])
        tabs = []
        try:
            senders = await open_tabs(a.url, sessions[: phase.clients], time_limit=60)
            tabs += senders
            watchers = await open_tabs(b.url, sessions[: phase.clients], time_limit=60)
            tabs += watchers
            sender_of = {stream.key: tab for stream, tab in zip(streams, senders, strict=True)}
            watcher_of = {watch.key: tab for watch, tab in zip(watches, watchers, strict=True)}

            watch_of = {watch.key: watch for watch in watches}
            refused = {watch.key: asyncio.Event() for watch in watches}

            async def ask(stream):
                try:
                    await ask_confab(
                        sender_of[stream.key], stream, model=model, tokens=phase.tokens
                    )
                finally:
                    if stream.refused:  # no conversation: nothing for its watcher to see
                        watch_of[stream.key].refused = stream.refused
                        refused[stream.key].set()

            async def watch(one):
                watching = asyncio.ensure_future(watch_confab(watcher_of[one.key], one))
                given_up = asyncio.ensure_future(refused[one.key].wait())
                try:
                    await asyncio.wait([watching, given_up], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (watching, given_up):
                        task.cancel()
                    await asyncio.gather(watching, given_up, return_exceptions=True)
                if watching.done() and not watching.cancelled() and watching.exception():
                    raise watching.exception()

            before = {name: await server.counts() for name, server in servers.items()}
            pids = {name: server.pid for name, server in servers.items()}
            clock = procs.CpuClock(**pids, load=os.getpid(), upstream=self.upstream.pid)
            services = ServiceClock(self.services.redis_pid) if len(servers) > 1 else None
            limit = self.time_limit(phase)
            with contextlib.ExitStack() as profiles:
                for name, server in servers.items():
                    profiles.enter_context(self.profiling(server, phase, f"-{name}"))
                await asyncio.gather(
                    run_streams(watches, watch, ramp=0, time_limit=limit),
                    run_streams(streams, ask, ramp=phase.ramp, time_limit=limit),
                )
            cpu = clock.read()
            service_cpu = services.read() if services else None
            after = {name: await server.counts() for name, server in servers.items()}
        finally:
            await close_tabs(tabs)
        return {"cpu": cpu, "service_cpu": service_cpu, "before": before, "after": after}

    async def warm_up_floor(self, client, phase):
        """One short read first, as Confab gets one: the client's first request is slower."""
        stream = Stream(f"{phase.tag}-floor-warm")
        await run_streams(
            [stream], partial(ask_upstream, client, tokens=WARM_UP_TOKENS), ramp=0, time_limit=30
        )
        await self.timelines([stream])
        if stream.error:
            raise RuntimeError(f"the upstream failed a warm-up read: {stream.error}")

    async def warm_up(self, server, phase):
        """One short reply first, so imports and first connections are not measured."""
        stream = Stream(f"{phase.tag}-warm")
        tabs = await open_tabs(server.url, self.sessions[:1], time_limit=30)
        try:
            ask = partial(ask_confab, tabs[0], model=self.model, tokens=WARM_UP_TOKENS)
            await run_streams([stream], ask, ramp=0, time_limit=30)
        finally:
            await close_tabs(tabs)
        await self.timelines([stream])
        if stream.error:
            raise RuntimeError(f"the warm-up reply failed: {stream.error}\n{server.log_tail()}")

    def time_limit(self, phase):
        return phase.ramp + 3 * phase.tokens / self.args.rate + 30

    async def timelines(self, streams):
        """When the upstream wrote each stream's chunks (and forgets them)."""
        async with httpx.AsyncClient(timeout=60) as client:
            url = self.upstream_url.removesuffix("/v1") + "/bench/timeline"
            response = await client.post(url, json=[stream.key for stream in streams])
        response.raise_for_status()
        return response.json()


def cpu_figures(cpu_s, summary):
    """CPU per upstream chunk and per reply served."""
    chunks, replies = summary["chunks_written"], summary["streams"]
    return {
        "cpu_s": cpu_s,
        "cpu_s_per_1k_chunks": cpu_s / chunks * 1000 if chunks else None,
        "cpu_us_per_chunk": cpu_s / chunks * 1e6 if chunks else None,
        "cpu_ms_per_reply": cpu_s / replies * 1000 if replies else None,
    }


def pair_result(phase, streams, watches, timelines, measured, idle_kb, peak_kb, alone):
    """The figures of a pair phase: both sides' correctness and latency, CPU per frame that
    reached the watchers, channel-layer calls per such frame, and the same N alone."""
    tokens = phase.tokens
    sender, watcher = summarise(streams, timelines, tokens), summarise(watches, timelines, tokens)
    cpu, service_cpu = measured["cpu"], measured["service_cpu"]
    chunks = sender["chunks_written"]
    frames = sum(w.delta_frames for w in watches)  # frames the watchers got live
    served = max(sender["streams"], 1)
    servers = {}
    for name in measured["before"]:
        before, after = measured["before"][name], measured["after"][name]
        layer = {call: layer_change(before, after, call) for call in LAYER_CALLS}
        layer["dropped_over_capacity"] = layer_change(before, after, "dropped_over_capacity")
        events = layer_events_change(before, after)
        servers[name] = {
            "cpu_s": cpu[name],
            "cpu_s_per_1k_chunks": cpu[name] / chunks * 1000 if chunks else None,
            "cpu_us_per_watcher_frame": cpu[name] / frames * 1e6 if frames else None,
            "rss_mb": {"idle": idle_kb[name] / 1024, "peak": peak_kb[name] / 1024},
            "layer": layer,
            "layer_events": events,
            # The frames' own layer traffic (message.delta relayed one by one before
            # 2026-11-26, runner.deliver batches since), per frame a watcher got; the rest
            # is per reply (message.created, .done, conversation.*, snapshot requests).
            "layer_per_watcher_frame": {
                call: (
                    events.get(f"{call} message.delta", 0) + events.get(f"{call} runner.deliver", 0)
                )
                / frames
                if frames
                else None
                for call in LAYER_CALLS
            },
            "layer_per_reply": {call: count / served for call, count in layer.items()},
            "database": per_reply(before, after, served),
        }
    total_s = sum(cpu[name] for name in servers)
    catch_up = [w.live_from - w.sent_at for w in watches if w.live_from and w.sent_at]
    result = {
        **asdict(phase),
        "sender": sender,
        "watcher": {
            **watcher,
            "catch_up_ms": {
                "p50": seconds_to_ms(percentile(catch_up, 0.5)),
                "p99": seconds_to_ms(percentile(catch_up, 0.99)),
            },
            "delta_frames": frames,
            "checkpoint_snapshots": sum(w.checkpoints for w in watches),
            "runner_snapshots": sum(w.snapshots for w in watches),
            "early_deltas": sum(w.early_deltas for w in watches),
            # Subscribed, but the runner's snapshot never came: no live frames either.
            "never_caught_up": sum(1 for w in watches if not w.refused and w.live_from is None),
        },
        "live_delivery_ms": pair_delivery(streams, watches, timelines, tokens),
        "servers": servers,
        "cpu": {
            "servers_s": total_s,
            "servers_s_per_1k_chunks": total_s / chunks * 1000 if chunks else None,
            "servers_us_per_watcher_frame": total_s / frames * 1e6 if frames else None,
            "service_s": service_cpu,
            "service_us_per_watcher_frame": {
                name: spent / frames * 1e6 if spent is not None and frames else None
                for name, spent in (service_cpu or {}).items()
            },
            "load_busy": (cpu["load"] + cpu["upstream"]) / cpu["wall"],
            "other_programs_cores": cpu["others"],
            "wall_s": cpu["wall"],
        },
        "chunks_written": chunks,
    }
    if alone is not None:
        result["alone"] = {
            "phase": alone["name"],
            "cpu_s_per_1k_chunks": alone["relay"]["cpu_s_per_1k_chunks"],
            "delivery_ms": alone["relay"]["delivery_ms"],
        }
        if frames and alone["relay"]["cpu_s_per_1k_chunks"] is not None:
            # What the watchers cost on top of the senders alone, per frame they got.
            alone_s = alone["relay"]["cpu_s_per_1k_chunks"] * chunks / 1000
            result["cpu"]["added_us_per_watcher_frame"] = (total_s - alone_s) / frames * 1e6
    return result


def git(*command):
    """A read-only git command in this repository; its output."""
    return subprocess.run(
        ["git", *command], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def unpack_commit(ref, destination):
    """The tree of a commit, as `git archive` gives it, to run without touching the checkout;
    its bench/ replaced by this one, so that the server runs under the same bench.server
    (the counters) as the harness expects."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    destination.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    shutil.rmtree(destination / "bench", ignore_errors=True)
    shutil.copytree(
        ROOT / "bench",
        destination / "bench",
        ignore=shutil.ignore_patterns("results", "__pycache__"),
    )
    return commit


def code_state(commit):
    """Which Confab was measured: a commit, or this working tree with its edits."""
    if commit:
        return {"commit": commit, "source": "git archive, this tree's bench/"}
    changed = bool(git("status", "--short", "--untracked-files=no"))
    return {"commit": git("rev-parse", "HEAD"), "source": "working tree", "edited": changed}


async def run(args):
    phases = plan(args)
    workdir = Path(tempfile.mkdtemp(prefix="confab-bench-"))
    app, commit = ROOT, None
    if args.commit:
        app = workdir / "app"
        commit = unpack_commit(args.commit, app)
    bench = Bench(args, workdir, app)
    os.sched_setaffinity(0, bench.cores.load)
    floor_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    started = time.monotonic()
    # SIGTERM ends the run as Ctrl-C does: through the `finally` below, which stops the
    # processes and removes the database and the Redis db.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        bench.start_upstream()
        bench.prepare_database(users=max(phase.clients for phase in phases))
        if args.redis:  # PostgreSQL or Redis missing: say so now, not after the other phases
            bench.prepare_cluster(users=max(args.redis))
        results = []
        for phase in phases:
            print(f"bench: {phase.name} ({phase.clients} clients)…", file=sys.stderr, flush=True)
            results.append(await bench.measure(phase))
        pairs = []
        for phase in plan_pairs(args):
            print(f"bench: {phase.name} (2 × {phase.clients} tabs)…", file=sys.stderr, flush=True)
            alone = next(
                (r for r in results if r["kind"] == "steady" and r["clients"] == phase.clients),
                None,
            )
            pairs.append(await bench.measure_pair(phase, alone))
    finally:
        try:
            bench.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    config = {
        "server": SERVER,
        # The floor's reader runs in this process: on uvloop when it is installed (it is no
        # dependency of Confab's), while daphne serves on asyncio's own loop.
        "floor_loop": floor_loop,
        "rate": args.rate,
        "tokens": args.tokens,
        "quick": args.quick,
        "server_cores": sorted(bench.cores.server),
        "load_cores": sorted(bench.cores.load),
        "pinned": bench.cores.pinned,
        # The server inherits the environment: its coalescing window, for the capacity goal.
        "frame_interval_ms": int(os.environ.get("CONFAB_FRAME_INTERVAL_MS", "50")),
    }
    result = {
        "config": config,
        "machine": procs.machine(),
        "code": code_state(commit),
        "run_seconds": round(time.monotonic() - started, 1),
        "phases": results,
    }
    if pairs:
        a_cores, b_cores = bench.pair_cores()
        config["redis"] = {
            "clients": args.redis,
            "cores": args.redis_cores,
            "a_cores": sorted(a_cores),
            "b_cores": sorted(b_cores),
            "redis_url": args.redis_url,
            "postgres": args.postgres,
        }
        result["pairs"] = pairs
    return result


def run_loop(coroutine):
    """uvloop when it is there: the clients are load, not the system under test. (The
    floor's reader runs here too: the result's `config.floor_loop` says on which loop.)"""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 50, 100, 200, 300, 500],
        help="comma-separated concurrent streams per phase (default 1,50,100,200,300,500)",
    )
    parser.add_argument("--tokens", type=int, default=500, help="content chunks per reply")
    parser.add_argument("--rate", type=float, default=50, help="chunks per second per stream")
    parser.add_argument("--ramp", type=float, help="seconds over which sends are spread")
    parser.add_argument("--burst", type=int, default=100, help="sends within 1 s; 0: none")
    parser.add_argument("--starts", type=int, default=50, help="one-token sends; 0: none")
    parser.add_argument("--quick", action="store_true", help="N=1 and 20, short replies")
    parser.add_argument("--output", type=Path, help="JSON result (default bench/results/)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the server with py-spy (on PATH) during each phase; stacks go here",
    )
    parser.add_argument(
        "--commit",
        help="measure this commit (unpacked with git archive) instead of the working tree",
    )
    parser.add_argument(
        "--redis",
        nargs="?",
        const="50,100",
        type=lambda text: [int(n) for n in text.split(",")],
        help="also two processes on PostgreSQL + Redis, a watching tab on B per sender on A,"
        " for these N (default 50,100), and the same N in one process",
    )
    parser.add_argument(
        "--redis-cores",
        choices=["split", "shared"],
        default="split",
        help="--redis: A on the server core and B on the load core (split, default: a core"
        " per worker, as a deployment has), or both on the server core (shared)",
    )
    parser.add_argument("--postgres", default=POSTGRES, help="--redis: the PostgreSQL server")
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="--redis: a Redis db of the run's own (flushed)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.tokens, args.burst, args.starts = [1, 20], 60, 20, 10
    if args.output is None:
        args.output = RESULTS / ("quick.json" if args.quick else "latest.json")
    if args.profile is not None:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy on PATH (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


FAILURES = ("lost_chunks", "seq_reorders", "seq_gaps", "bad_replies", "errors")


def failures(result):
    sides = [phase["relay"] for phase in result["phases"]]
    for pair in result.get("pairs", ()):
        sides += [pair["sender"], pair["watcher"]]
    return sum(side[name] for side in sides for name in FAILURES)


def main(argv=None):
    args = parse_args(argv)
    result = run_loop(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(render(result))
    print()
    print(summary_line(result, args.output))
    return 1 if failures(result) else 0


if __name__ == "__main__":
    sys.exit(main())
