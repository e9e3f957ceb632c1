"""What relaying a streamed reply through Confab costs, against reading the upstream directly.

    .venv/bin/python -m bench.relay              # N = 1, 50, 100, 200, 300, 500; burst; sends
    .venv/bin/python -m bench.relay --quick      # N = 1 and 20, short replies, under 30 s
    .venv/bin/python -m bench.relay --commit HEAD  # a commit (git archive), not the worktree

How it measures (docs/performance.md has the method, the latest table and its reading):

- A fake upstream (bench.upstream) runs in its own process, pinned to the load core(s). It
  streams 50 content chunks/s per reply (English, Chinese and code; a usage chunk; [DONE])
  and logs when it wrote each chunk, on the machine-wide monotonic clock.
- Per phase, the *floor* first: N httpx clients read the upstream directly, from the core
  the server will use (idle then). Then a fresh Confab process (bench.server: the `serve`
  command, one uvicorn worker, SQLite in a temporary CONFAB_VAR_DIR) is started on its own
  core; after one warm-up reply, N websocket clients, each signed in as a distinct user,
  each send one message in a new conversation and read until `message.done`.
- Sends are spread evenly over --ramp seconds (half a reply by default, so every stream
  overlaps every other for half a reply); the burst phase sends --burst messages within
  one second; the start phase sends --starts one-token messages to price a send.
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
from bench.clients import Stream, ask_confab, ask_upstream, close_tabs, open_tabs, run_streams
from bench.report import render, summary_line
from bench.stats import compare, per_reply, summarise

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "sk-bench-0000-not-a-secret"
WARM_UP_TOKENS = 5
START_TIMEOUT_S = 60
COUNTS_TIMEOUT_S = 10


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # "steady", "burst" or "start"
    clients: int
    tokens: int
    ramp: float  # sends are spread evenly over this many seconds

    @property
    def tag(self):
        """A short name for stream keys: letters, digits, dots and dashes only."""
        return f"{self.kind}{self.clients}"


def plan(args):
    """The phases of a run, smallest first."""
    ramp = args.ramp if args.ramp is not None else args.tokens / args.rate / 2
    phases = [Phase(f"N={n}", "steady", n, args.tokens, ramp) for n in args.clients]
    if args.burst:
        phases.append(Phase(f"burst {args.burst}/s", "burst", args.burst, args.tokens, 1.0))
    if args.starts:
        phases.append(Phase("1-token sends", "start", args.starts, 1, args.starts / 20))
    return phases


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

    def __init__(self, *, app, kind, env, cores, workdir, tag):
        self.app = app
        self.kind = kind
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
        command += ["--server", self.kind, "--counts", str(self.counts_path)]
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
        manage = [sys.executable, str(self.app / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], **self._tool_options())
        seed = [sys.executable, "-m", "bench.seed", "--users", str(users)]
        seeded = json.loads(subprocess.run(seed, **self._tool_options()).stdout.splitlines()[-1])
        self.model, self.sessions = seeded["model"], seeded["sessions"]

    def _tool_options(self):
        return {
            "env": self.env,
            "cwd": self.app,
            "check": True,
            "capture_output": True,
            "text": True,
            "timeout": 300,
        }

    def close(self):
        if self.upstream is not None:
            procs.stop(self.upstream)

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
            kind=self.args.server,
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

    def profiling(self, server, phase):
        if self.args.profile is None:
            return contextlib.nullcontext()
        output = self.args.profile / f"{self.args.server}-{phase.tag}.txt"
        return procs.sampling_profile(server.pid, output, cores=self.cores.load)

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


def git(*command):
    """A read-only git command in this repository; its output."""
    return subprocess.run(
        ["git", *command], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def unpack_commit(ref, destination):
    """The tree of a commit, as `git archive` gives it, to run without touching the checkout."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    destination.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return commit


def code_state(commit):
    """Which Confab was measured: a commit, or this working tree with its edits."""
    if commit:
        return {"commit": commit, "source": "git archive"}
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
    started = time.monotonic()
    try:
        bench.start_upstream()
        bench.prepare_database(users=max(phase.clients for phase in phases))
        results = []
        for phase in phases:
            print(f"bench: {phase.name} ({phase.clients} clients)…", file=sys.stderr, flush=True)
            results.append(await bench.measure(phase))
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    config = {
        "server": args.server,
        "rate": args.rate,
        "tokens": args.tokens,
        "quick": args.quick,
        "server_cores": sorted(bench.cores.server),
        "load_cores": sorted(bench.cores.load),
        "pinned": bench.cores.pinned,
        # The server inherits the environment: its coalescing window, for the capacity goal.
        "frame_interval_ms": int(os.environ.get("CONFAB_FRAME_INTERVAL_MS", "50")),
    }
    return {
        "config": config,
        "machine": procs.machine(),
        "code": code_state(commit),
        "run_seconds": round(time.monotonic() - started, 1),
        "phases": results,
    }


def run_loop(coroutine):
    """uvloop when it is there: the clients are load, not the system under test."""
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
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
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


def failures(result):
    return sum(
        phase["relay"][name]
        for phase in result["phases"]
        for name in ("lost_chunks", "seq_reorders", "seq_gaps", "bad_replies", "errors")
    )


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
