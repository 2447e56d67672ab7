"""Smoke run of the locust suite: a few seconds, a handful of users of every scenario.

No assertion on speed: only that the headless run works end to end (``loadtests/run_locust.py``
starts the server, locust runs and writes its CSV, the server stops), that the numbers agree with
each other, and that no message was lost. Locust runs in its own process (it monkey-patches
gevent into whatever imports it), against a real server on a real socket.

Skipped with the reason when the ``bench`` extra is missing, unless ``MESH_REQUIRE_BENCH=1``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import require_bench_extra

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "loadtests" / "run_locust.py"

USERS = 10
"""Class weights 6:3:1 make this 6 chat, 3 command and 1 churn user."""

RUN_ARGS = [
    *("-u", str(USERS), "-r", str(USERS), "-t", "4s"),
    "--",
    *("--mesh-rooms", "2"),  # 3 chat users a room, one of them sending: real fan-out
    *("--mesh-chat-interval", "0.25", "--mesh-churn-interval", "0.5", "--mesh-command-wait", "0.05"),
]

RUN_TIMEOUT_S = 90
"""Bound on the whole run (about 8 s normally): a hang fails instead of waiting for pytest's timeout."""


@pytest.fixture
def bench_installed() -> None:
    """Skip without locust and websocket-client, except when ``MESH_REQUIRE_BENCH=1``."""
    require_bench_extra("locust", "websocket")


async def test_headless_run_counts_everything_and_loses_nothing(
    bench_installed: None, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """Run the suite for a few seconds; check exit code, CSV rows and the completeness summary."""
    env = {**os.environ, "MESH_KEY_PREFIX": key_prefix}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        *("--out", str(tmp_path), "--redis-url", redis_url),
        *RUN_ARGS,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    output = stdout.decode(errors="replace")
    assert process.returncode == 0, output

    with (tmp_path / "mesh_stats.csv").open(newline="") as file:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}
    for name in (
        "connect",
        "disconnect",
        "command echo",
        "command mesh/set-my-connection-metadata",
        "command mesh/get-my-connection-metadata",
        "command mesh/join-room",
        "command mesh/leave-room",
        "command chat-send",
        "push room-message",
    ):
        row = stats.get(("WS", name))
        assert row is not None, f"no CSV row for WS {name}: {sorted(stats)}"
        assert int(row["Request Count"]) > 0, row
        assert int(row["Failure Count"]) == 0, row
    assert int(stats[("", "Aggregated")]["Failure Count"]) == 0

    summary = json.loads((tmp_path / "completeness.json").read_text())
    assert summary["ok"] is True, summary
    scenarios = summary["scenarios"]
    assert sorted(scenarios) == ["chat", "churn", "commands"], summary
    for name, tally in scenarios.items():
        assert tally["expected"] == tally["received"] > 0, (name, tally)
        assert tally["lost"] == tally["unconfirmed"] == tally["pending"] == 0, (name, tally)
    # Fan-out happened: 3 members a room, so more deliveries than chat sends.
    chat_sends = int(stats[("WS", "command chat-send")]["Request Count"]) - scenarios["churn"]["expected"]
    assert scenarios["chat"]["expected"] > chat_sends > 0, (scenarios, chat_sends)
    # The stats and the tallies count the same pushes.
    assert int(stats[("WS", "push room-message")]["Request Count"]) == summary["pushes"]["room-message"]
    commands = sum(
        int(stats[("WS", f"command {name}")]["Request Count"])
        for name in ("echo", "mesh/set-my-connection-metadata", "mesh/get-my-connection-metadata")
    )
    assert commands == scenarios["commands"]["expected"]

    for name in ("chat", "commands", "churn"):
        expected, received = scenarios[name]["expected"], scenarios[name]["received"]
        line = f"delivery completeness [{name}]: expected={expected} received={received} lost=0"
        assert re.search(rf"^{re.escape(line)}$", output, re.MULTILINE), output
