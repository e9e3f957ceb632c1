"""The benchmarks' quick runs, so that they cannot rot: correctness only, never a time.

It runs `python -m bench.relay --quick` (a real server, a fake upstream and websocket
clients, about 20 s) and checks that every reply arrived whole and in order, that nothing
failed, and that the database is not written per delta; and `python -m bench.start` for a
few sends, checking that a start writes what it must in one transaction.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_quick_benchmark_relays_every_reply_whole_without_a_write_per_delta(tmp_path):
    output = tmp_path / "quick.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.relay", "--quick", "--output", str(output)],
        cwd=ROOT,
        # One upstream request per reply: a conversation's title would be one more.
        env={**os.environ, "CONFAB_AUTO_TITLE": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("bench: OK")

    phases = json.loads(output.read_text())["phases"]
    assert {phase["kind"] for phase in phases} == {"steady", "burst", "start"}
    for phase in phases:
        relay, database = phase["relay"], phase["relay"]["database"]
        chunks_per_reply = relay["chunks_written"] / relay["streams"]
        assert relay["streams"] == phase["clients"], phase["name"]
        assert relay["errors"] == 0, (phase["name"], relay["error_examples"])
        assert relay["lost_chunks"] == 0, phase["name"]
        assert relay["bad_replies"] == 0, phase["name"]
        assert relay["seq_gaps"] == relay["seq_reorders"] == 0, phase["name"]
        assert database["messages_created"] == 2, phase["name"]  # the user's and the reply
        if phase["kind"] != "start":  # one-token replies have a single delta
            assert relay["delta_frames_per_reply"] < chunks_per_reply, phase["name"]
            assert database["writes"] < chunks_per_reply / 2, phase["name"]
            assert database["message_updates"] < chunks_per_reply / 4, phase["name"]


def test_a_measured_start_writes_its_rows_in_one_transaction_and_a_settle_none_anew(tmp_path):
    output = tmp_path / "start.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.start", "--sends", "5", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("bench.start: accept")

    parts = json.loads(output.read_text())["parts"]
    accept = parts["accept"]["statements"]
    assert accept["BEGIN"] == 1  # one transaction
    assert accept["INSERT conversations_conversation"] == 1
    assert accept["INSERT conversations_message"] == 2  # the user's message and the reply
    assert accept["INSERT conversations_usagerecord"] == 1  # the reservation
    for settled in ("settle, 1 token", "settle, 500 tokens"):
        statements = parts[settled]["statements"]
        assert not any(kind.startswith("INSERT") for kind in statements), settled
        assert statements["UPDATE conversations_usagerecord"] == 1  # the reservation settled
