"""`manage.py serve`, as `make run` starts it: the site first, at once; what it starts, it
stops; a provider that does not answer stops nothing."""

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

ROOT = Path(__file__).resolve().parent.parent


def children(pid):
    """The processes any thread of `pid` started."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        found += [int(child) for child in path.read_text().split()] if path.exists() else []
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def serve(tmp_path, **env):
    """`serve` on a fresh database, its output in a file: (process, URL, log path)."""
    unset = ("OPENAI_BASE_URL", "DATABASE_URL", "REDIS_URL")
    env = {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "CONFAB_VAR_DIR": str(tmp_path),
        **env,
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=out
        )
    return process, f"http://127.0.0.1:{port}", log


def wait_for(url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            urlopen(url, timeout=1).close()
            return
        except (URLError, OSError):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)


def test_a_provider_that_does_not_answer_stops_nothing(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    process, url, log = serve(tmp_path, OPENAI_BASE_URL=dead)
    try:
        wait_for(url + "/accounts/signup/", process)
    finally:
        process.terminate()
        process.wait(30)

    said = log.read_text()
    assert f"Default: Could not reach {dead.split('/')[2]}: the connection was refused" in said
    assert "Confab starts anyway and tries it again every 30 s" in said
    assert "Traceback" not in said and "CommandError" not in said


@pytest.mark.local_model
def test_the_site_answers_before_the_local_model_is_ready(tmp_path):
    process, url, log = serve(tmp_path)
    try:
        wait_for(url + "/accounts/signup/", process)
        said_then = log.read_text()
        deadline = time.monotonic() + 120
        while "The local model is ready" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(30)

    assert "Confab is running at" in said_then
    assert "The local model is ready" not in said_then  # the site came first


@pytest.mark.local_model
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_serve_stops_the_local_model_it_started(tmp_path, sig):
    process, url, log = serve(tmp_path)
    try:
        wait_for(url + "/accounts/signup/", process)
        deadline = time.monotonic() + 60
        while "The local model is ready" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        [model_server] = children(process.pid)

        process.send_signal(sig)
        process.wait(30)
        for _ in range(100):
            if not alive(model_server):
                break
            time.sleep(0.1)

        assert not alive(model_server)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_build_says_what_is_happening_not_pips_noise(monkeypatch):
    from conversations.management.commands import serve as command

    monkeypatch.setattr(command, "PROGRESS_EVERY_S", 0.2)
    monkeypatch.setattr(command, "local_model_installed", lambda: True)
    pip = "; ".join(
        f"print({line!r}, flush=True)"
        for line in [
            "Collecting llama-cpp-python>=0.3.16",
            "  Downloading numpy-2.3.0-cp311-manylinux.whl (16.6 MB)",
            "Requirement already satisfied: typing-extensions in ./.venv",
            "Building wheels for collected packages: llama-cpp-python",
        ]
    )
    said = []
    local = command.LocalModel(free_port(), said.append)

    local.install([sys.executable, "-c", pip + "; import time; time.sleep(0.7)"])

    assert said[0].startswith("Building the bundled local model once (about four minutes")
    assert "  Collecting llama-cpp-python>=0.3.16" in said
    assert "  Building wheels for collected packages: llama-cpp-python" in said
    assert not any("Downloading" in line or "Requirement" in line for line in said)
    assert any(line.startswith("  …still building the local model (0 min 0") for line in said)
    assert said[-1].startswith("Built in ")
