"""The echo round-trip scenario: C closed-loop clients, ops/s, latency, server CPU per op.

Each client sends ``echo`` with a payload holding its send time, awaits the answer, checks it is
the payload it sent, and repeats. After a warm-up, a window is measured; then every client finishes
its outstanding request. Every request is counted: ``lost`` is sent minus answered, ``wrong`` the
answers that differ from what was sent. ``limit`` says which side bounded ops/s (see
:meth:`~mesh_actors.bench.window.WindowCpu.limit`): compare ``server_cpu_us_per_op``, not ops/s.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from .options import BenchOptions
from .report import Reporter, percentile_us
from .servers import ServerUnderTest
from .window import measure_window
from .wsclient import Client, Hub, open_client

CONNECT_TIMEOUT_S = 60.0
"""For connecting a whole client set."""
DRAIN_TIMEOUT_S = 5.0
"""After the window, how long outstanding requests may take before they count as lost."""


@dataclass
class Phase:
    """Phase flags shared by the clients of one run (set by the conductor only)."""

    measuring: bool = False
    """True inside the measured window: completions are counted and their latency kept."""
    stopping: bool = False
    """Set after the window: each client finishes its outstanding request and stops."""


@dataclass
class EchoStats:
    """What one client saw. ``sent - answered`` at the end is the number of lost requests."""

    sent: int = 0
    answered: int = 0
    wrong: int = 0
    """Answers whose payload differs from the request's."""
    ops: int = 0
    """Correct answers completed inside the measured window."""
    latencies: array[int] = field(default_factory=lambda: array("q"))
    error: str | None = None


async def closed_loop(index: int, client: Client, phase: Phase, stats: EchoStats) -> None:
    """Send ``echo``, await the answer, check it, repeat until ``phase.stopping``."""
    clock, latencies, seq = time.perf_counter_ns, stats.latencies, 0
    try:
        while not phase.stopping:
            seq += 1
            payload = {"t": clock(), "c": index, "s": seq}
            stats.sent += 1
            answer = await client.command("echo", payload)
            done = clock()
            stats.answered += 1
            if answer != payload:
                stats.wrong += 1
            elif phase.measuring:
                stats.ops += 1
                latencies.append(done - payload["t"])
    except ConnectionError as error:
        stats.error = f"client {index}: {error!r}"


async def run_echo(
    server: ServerUnderTest, kind: str, clients: int, warmup: float, duration: float
) -> dict[str, Any]:
    """Connect ``clients`` clients, warm up, measure ``duration`` seconds, drain; the result record."""
    hub = Hub()
    connections: list[Client] = []
    try:
        opened = await asyncio.wait_for(
            asyncio.gather(*(open_client(kind, hub, server.port) for _ in range(clients))), CONNECT_TIMEOUT_S
        )
        connections.extend(opened)
        phase = Phase()
        stats = [EchoStats() for _ in range(clients)]
        tasks = [
            asyncio.create_task(closed_loop(i, client, phase, stats[i])) for i, client in enumerate(opened)
        ]
        await asyncio.sleep(warmup)

        def measuring(on: bool) -> None:
            phase.measuring = on

        cpu = await measure_window(server.pid, duration, measuring)
        phase.stopping = True
        done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await asyncio.gather(*(client.close() for client in connections), return_exceptions=True)

    ops = sum(s.ops for s in stats)
    sent, answered = sum(s.sent for s in stats), sum(s.answered for s in stats)
    latencies = sorted(value for s in stats for value in s.latencies)
    errors = [s.error for s in stats if s.error]
    errors += [f"client crashed: {t.exception()!r}" for t in done if t.exception() is not None]
    errors += [f"{len(pending)} client(s) got no answer within {DRAIN_TIMEOUT_S:g} s"] if pending else []
    return {
        "scenario": "echo",
        "target": server.target,
        "client": kind,
        "clients": clients,
        "warmup_s": warmup,
        "duration_s": round(cpu.elapsed, 3),
        "ops": ops,
        "ops_per_s": round(ops / cpu.elapsed, 1),
        "p50_us": percentile_us(latencies, 50),
        "p99_us": percentile_us(latencies, 99),
        **cpu.fields("op", ops),
        "limit": cpu.limit("round-trip"),
        "sent": sent,
        "answered": answered,
        "lost": sent - answered,
        "wrong": sum(s.wrong for s in stats),
        "errors": errors[:10],
    }


async def run_client_sets(
    options: BenchOptions, server: ServerUnderTest, reporter: Reporter
) -> list[dict[str, Any]]:
    """One echo run per client count; each result goes to ``reporter`` as soon as it is known."""
    results = []
    for clients in options.clients:
        reporter.progress(
            f"[{server.target}] echo C={clients}: "
            f"warm-up {options.warmup:g} s, measuring {options.duration:g} s"
        )
        record = await run_echo(server, options.client, clients, options.warmup, options.duration)
        results.append(reporter.result(record))
    return results
