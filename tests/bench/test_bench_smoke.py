"""``mesh-actors bench --quick``: the harness runs, counts every op and delivery, and loses nothing.

A smoke test of seconds on real processes and sockets: the baseline server and the inline server
as pinned subprocesses, the generator in another. No assertion on speed, only on counts: every
request answered, every publish delivered to every subscriber in order, one JSON line per scenario
(on stdout and in the ``--out`` file), a ratio to the baseline, and the plot. Skipped with the
reason when the ``bench`` extra is missing, unless ``MESH_REQUIRE_BENCH=1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_bench_extra

RUN_TIMEOUT_S = 100
"""Bound on the whole run (about 12 s normally): a hang fails instead of waiting for pytest's timeout."""


@pytest.fixture
def bench_extra() -> None:
    """Skip without matplotlib and picows (the ``bench`` extra), except when ``MESH_REQUIRE_BENCH=1``."""
    require_bench_extra("matplotlib", "picows")


def pinning_args() -> list[str]:
    """Pin as the harness does by default when the machine allows it, else ``--no-pin``."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return ["--no-pin"]
    return ["--server-cpu", str(cpus[0]), "--generator-cpu", str(cpus[1])]


async def run_bench_cli(*args: str) -> tuple[int, str, str]:
    """``python -m mesh_actors bench ARGS``: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh_actors", "bench", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def check_echo(record: dict[str, Any]) -> None:
    """Every echo request was answered with its own payload."""
    assert record["errors"] == [], record["errors"]
    assert record["ops"] > 0
    assert record["lost"] == 0 and record["sent"] == record["answered"]
    assert record["wrong"] == 0
    assert record["ops"] <= record["answered"]
    assert record["server_cpu_us_per_op"] is not None


def check_fanout(record: dict[str, Any]) -> None:
    """Every publish reached every subscriber, once, in order."""
    assert record["errors"] == [], record["errors"]
    assert record["publish_errors"] == 0
    assert record["received"] == record["total_published"] * record["subscribers"]
    assert record["lost"] == 0 and record["expected"] == record["received"]
    assert record["disorder"] == 0 and record["garbled"] == 0 and record["stale"] == 0
    assert 0 < record["deliveries"] <= record["received"]
    assert record["server_cpu_us_per_delivery"] is not None


async def test_quick_bench_counts_everything_and_loses_nothing(bench_extra: None, tmp_path: Path) -> None:
    """The CI smoke run: baseline and inline, echo and fan-out; JSON lines, ratios, the PNG."""
    status, stdout, stderr = await run_bench_cli(
        "--quick", "--out", str(tmp_path), "--name", "smoke", *pinning_args()
    )
    assert status == 0, stderr[-3000:]
    lines = stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert (tmp_path / "smoke.jsonl").read_text().splitlines() == lines
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    runs = sorted(
        (r["target"], r["scenario"], r.get("clients") or r["subscribers"], r.get("mode") or "")
        for r in records
    )
    expected = sorted(
        (target, *run)
        for target in ("baseline-websockets", "mesh-inline")
        for run in [("echo", 1, ""), ("echo", 5, ""), ("fanout", 20, "flat"), ("fanout", 20, "rate")]
    )
    assert runs == expected
    for record in records:
        if record["scenario"] == "echo":
            check_echo(record)
        else:
            check_fanout(record)
        assert record["baseline_ratio"] is not None  # the baseline ran first, at the same loads
        assert record["python_loop_ns"] > 0  # the machine-speed reference of this run
        if record["target"] == "baseline-websockets":
            assert record["baseline_ratio"] == 1.0
    assert "echo round trip" in stderr and "room fan-out" in stderr  # the human tables


async def test_bad_options_are_usage_errors() -> None:
    """Bad values fail before any server starts, with exit status 2 and the reason."""
    status, stdout, stderr = await run_bench_cli("--scenario", "nope", "--clients", "0")
    assert status == 2 and stdout == ""
    assert "--scenario must be among echo, fanout" in stderr and "--clients must be between" in stderr
    status, _, stderr = await run_bench_cli("--clients", "one")
    assert status == 2 and "comma list of integers" in stderr


async def test_the_node_reference_can_be_measured_in_the_same_run(
    bench_extra: None, node_modules: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--baseline-library node``: the original Node server, with its own embedded Redis, counted
    the same way (every echo answered, every publish delivered to every subscriber in order)."""
    monkeypatch.setenv("MESH_NODE_REFERENCE", str(Path(__file__).parents[1] / "interop" / "js"))
    status, stdout, stderr = await run_bench_cli(
        "--quick", "--baseline-library", "node", "--runtime", "inline", *pinning_args()
    )
    assert status == 0, stderr[-3000:]
    records = [json.loads(line) for line in stdout.splitlines()]
    node = [r for r in records if r["target"] == "baseline-node"]
    assert len(node) == 4 and "@prsm/realtime" in stderr
    for record in node:
        if record["scenario"] == "echo":
            check_echo(record)
        else:
            check_fanout(record)
