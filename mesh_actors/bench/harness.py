"""Runs a benchmark: every target (baselines first, then mesh-actors per runtime) through every scenario.

Each target is a server started as a pinned subprocess (:mod:`~mesh_actors.bench.servers`); this
process, pinned to the other core, is the load generator. The baselines run first so that each
mesh-actors record can carry its ratio to them as soon as it is printed.
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

from .calibrate import python_loop_ns
from .echo import run_client_sets
from .fanout import run_subscriber_sets
from .options import BENCH_EXTRA, BenchOptions
from .pinning import loop_name, run_pinned
from .plot import write_plot
from .report import Reporter, failed, format_report
from .servers import (
    STARTUP_TIMEOUT_S,
    ServerStartError,
    baseline_command,
    mesh_command,
    running_server,
    server_environment,
)


@dataclass(frozen=True)
class Target:
    """One server to measure: its name in the records and how it is started."""

    name: str
    command: list[str]
    startup_timeout: float


@dataclass
class BenchRun:
    """The outcome of :func:`run_bench`."""

    results: list[dict[str, Any]]
    status: int
    """0, or 1 if a server did not start or a record failed (a loss, a wrong answer, a client error)."""
    jsonl: Path | None
    png: Path | None


def targets(options: BenchOptions) -> list[Target]:
    """The baseline servers, then mesh-actors on each runtime."""
    found = [
        Target(f"baseline-{library}", baseline_command(library), STARTUP_TIMEOUT_S["baseline"])
        for library in options.baselines
    ]
    for runtime in options.runtimes:
        command = mesh_command(
            runtime, options.gateways, options.serve_args, options.shard_hosts, options.colocate
        )
        found.append(Target(f"mesh-{runtime}", command, STARTUP_TIMEOUT_S[runtime]))
    return found


async def run_targets(options: BenchOptions, reporter: Reporter) -> tuple[int, str]:
    """Every target through every scenario; returns (status, the generator's event loop name)."""
    status = 0
    env = server_environment(options.server_env)
    for target in targets(options):
        try:
            async with running_server(
                target.name, target.command, options.server_cpu, target.startup_timeout, env
            ) as server:
                reporter.progress(f"[{target.name}] {server.banner}")
                if "echo" in options.scenarios:
                    await run_client_sets(options, server, reporter)
                if "fanout" in options.scenarios:
                    await run_subscriber_sets(options, server, reporter)
        except (ServerStartError, RuntimeError, OSError, TimeoutError) as error:
            reporter.progress(f"[{target.name}] {error!r}")
            status = 1
    return status, loop_name()


def default_name(options: BenchOptions) -> str:
    """``bench-<runtimes>-<UTC time>``: the stem of the files written to ``--out``."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"bench-{'-'.join(options.runtimes)}-{stamp}"


def run_bench(
    options: BenchOptions, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> BenchRun:
    """Check ``options``, run them, print the tables; with ``options.out``, write ``.jsonl`` and ``.png``.

    JSON lines go to ``stdout`` as each record is known; progress and the tables to ``stderr``.
    Raises :class:`~mesh_actors.bench.options.BenchConfigError` before starting anything if the
    options cannot run. A missing matplotlib only skips the plot (with a message saying so).
    """
    options.check()
    reporter = Reporter(stdout, stderr)
    jsonl = png = None
    file: IO[str] | None = None
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
        stem = options.name or default_name(options)
        jsonl, png = options.out / f"{stem}.jsonl", options.out / f"{stem}.png"
        file = jsonl.open("w")
        reporter.also_write_to(file)
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    reporter.machine["python_loop_ns"] = python_loop_ns(options.server_cpu)
    try:
        status, loop = run_pinned(lambda: run_targets(options, reporter), options.generator_cpu)
    finally:
        if file is not None:
            file.close()
    results = reporter.results
    if any(failed(r) for r in results):
        status = 1
    if results:
        reporter.progress("\n" + format_report(results))
        reporter.progress(
            f"\nserver tree on cpu {options.server_cpu}, generator on cpu {options.generator_cpu} "
            f"({options.client} client, websockets {version('websockets')}, {loop}, Python "
            f"{sys.version.split()[0]}; machine speed: {reporter.machine['python_loop_ns']} ns per "
            "pure-Python loop iteration on the server's core); "
            "srv = server process tree, net = minus its CPU at rest, "
            "oth = every other process on the machine (100 = one core), "
            "x base = server CPU per unit / the websockets baseline's, x inl = / inline's"
        )
    if png is not None:
        png = _plot(results, png, reporter)
    if jsonl is not None:
        reporter.progress(f"wrote {jsonl}" + (f" and {png}" if png else ""))
    return BenchRun(results, status, jsonl, png)


def _plot(results: list[dict[str, Any]], path: Path, reporter: Reporter) -> Path | None:
    """Write the PNG, or say why not (matplotlib missing, no fan-out record)."""
    try:
        written = write_plot(results, path, f"mesh-actors room fan-out ({path.stem})")
    except ImportError:
        reporter.progress(f"no plot: matplotlib is not installed ({BENCH_EXTRA}); the JSON lines are written")
        return None
    return path if written else None
