"""The processes of a run: starting them pinned to cores, stopping them, reading /proc."""

import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a child gets when its parent dies


@dataclass(frozen=True)
class Cores:
    """Which cores the server and the load run on; both sets are all cores when not pinned."""

    server: frozenset
    load: frozenset

    @property
    def pinned(self):
        return not (self.server & self.load)

    @classmethod
    def split(cls):
        """The server on the first core we may use, the load on the others."""
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return cls(frozenset(available), frozenset(available))
        return cls(frozenset(available[:1]), frozenset(available[1:]))


def start(command, *, cores, env=None, cwd=None, log=None):
    """A child process pinned to `cores`, that gets SIGTERM if the benchmark itself dies."""

    def prepare():
        os.sched_setaffinity(0, cores)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=log or subprocess.PIPE,
        stderr=log or subprocess.DEVNULL,
        text=True,
        preexec_fn=prepare,
    )


def stop(process, timeout=20):
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def sampling_profile(pid, output, *, cores):
    """py-spy samples `pid` while the block runs, without pausing it; collapsed stacks."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    command += ["--nonblocking", "--output", str(output)]
    with output.with_suffix(".log").open("w") as log:
        spy = start(command, cores=cores, log=log)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


def cpu_seconds(pid):
    """User plus system CPU time of a process, all its threads included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted after the command name's closing parenthesis.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kb(pid):
    """{'VmRSS': ..., 'VmHWM': ...} of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(value.split()[0])
    return values


def wait_for_line(process, prefix, timeout):
    """The first line of a child's stdout that starts with `prefix`, read within `timeout`."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        line = process.stdout.readline() if readable else ""
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"{process.args[:4]} did not print {prefix!r} within {timeout} s")


def machine():
    """What the numbers were measured on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def machine_busy_seconds():
    """CPU time all cores spent on anything but idling and waiting, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuClock:
    """CPU seconds that named processes spent, and the wall-clock time, since it was made.

    `others` is what the rest of the machine spent meanwhile, in cores: another program
    busy during a phase makes its figures suspect.
    """

    def __init__(self, **pids):
        self.pids = pids
        self.started = time.monotonic()
        self.machine_before = machine_busy_seconds()
        self.before = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def read(self):
        spent = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        wall = time.monotonic() - self.started
        others = machine_busy_seconds() - self.machine_before - sum(spent.values())
        return {"wall": wall, "others": max(0.0, others) / wall, **spent}
