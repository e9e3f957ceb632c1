"""`manage.py serve`, as `make run` starts it: what it starts, it stops."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from conversations.management.commands.serve import free_port

pytestmark = pytest.mark.local_model
ROOT = Path(__file__).resolve().parent.parent


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_serve_stops_the_local_model_it_started(tmp_path, sig):
    env = {**os.environ, "CONFAB_VAR_DIR": str(tmp_path)}
    for name in ("OPENAI_BASE_URL", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    port = free_port()
    serve = subprocess.Popen(
        [*manage, "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).close()
                break
            except (URLError, OSError):
                assert time.monotonic() < deadline and serve.poll() is None
                time.sleep(0.2)
        [model_server] = children(serve.pid)

        serve.send_signal(sig)
        serve.wait(30)
        for _ in range(100):
            if not alive(model_server):
                break
            time.sleep(0.1)

        assert not alive(model_server)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
