"""One measured window: the server tree's and the generator's CPU over it, as result fields.

Why shared: the echo and fan-out scenarios must measure the same way (same tree walk, same CPU
fields, same saturation rule), or their figures, and the ratios to the baseline, would not compare.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .procstat import machine_busy_seconds, own_cpu_seconds
from .treecpu import Idle, TreeCpu, snapshot, tree_cpu

SATURATED = 0.90
"""Share of one core above which a side is reported as the limit (generator- or server-bound)."""


@dataclass
class WindowCpu:
    """CPU used over one window by the server tree (split) and by this generator process."""

    server: TreeCpu
    generator: float
    """Generator CPU seconds (user + system)."""
    elapsed: float
    """Wall seconds."""
    machine: float
    """CPU seconds the whole machine was busy (every process, both sides included)."""

    def limit(self, otherwise: str) -> str:
        """``generator`` or ``server`` if that side was saturated, else ``otherwise``.

        ``otherwise`` is ``round-trip`` for closed loops (each side partly waited for the other) and
        ``rate`` for an open loop at a fixed rate.
        """
        if self.generator / self.elapsed >= SATURATED:
            return "generator"
        if self.server.total / self.elapsed >= SATURATED:
            return "server"
        return otherwise

    def fields(self, unit: str, count: int, idle: Idle | None = None) -> dict[str, Any]:
        """The CPU part of a result record, per ``unit`` (``op`` or ``delivery``) over ``count`` units.

        ``server_cpu_us_per_<unit>`` is the figure that survives a noisy machine; ``_sys_`` is its
        kernel part; with ``idle``, ``server_net_cpu_us_per_<unit>`` subtracts the CPU at rest.
        ``other_cpu_pct`` is what the rest of the machine used meanwhile (100 = one core): when it
        is high, the two sides were not alone on their cores and throughput is not comparable.
        """

        def per_unit(seconds: float) -> float | None:
            return round(seconds / count * 1e6, 2) if count else None

        used, elapsed = self.server, self.elapsed
        record: dict[str, Any] = {
            "server_cpu_pct": round(used.total / elapsed * 100, 1),
            f"server_cpu_us_per_{unit}": per_unit(used.total),
            f"server_sys_us_per_{unit}": per_unit(used.system),
        }
        if idle is not None:
            net = max(0.0, used.total - idle.share * elapsed)
            record["idle_cpu_pct"] = round(idle.share * 100, 1)
            record[f"server_net_cpu_us_per_{unit}"] = per_unit(net)
            record["idle_cpu_pct_by_role"] = {role: round(v * 100, 1) for role, v in idle.by_role.items()}
        record |= {
            f"cpu_us_per_{unit}_by_role": {role: per_unit(v) for role, v in used.by_role.items()},
            "cpu_pct_by_role": {role: round(v / elapsed * 100, 1) for role, v in used.by_role.items()},
            "server_pids": used.pids,
            "server_cpus": used.cpus,
            "generator_cpu_pct": round(self.generator / elapsed * 100, 1),
            f"generator_cpu_us_per_{unit}": per_unit(self.generator),
            "generator_saturated": self.generator / elapsed >= SATURATED,
            "other_cpu_pct": round(max(0.0, self.machine - used.total - self.generator) / elapsed * 100, 1),
        }
        return record


async def measure_window(
    root: int, seconds: float, measuring: Callable[[bool], None], threads: bool = False
) -> WindowCpu:
    """Read the counters, flip ``measuring(True)``, wait ``seconds``, flip it back, read again."""
    before, own0, wall0 = snapshot(root, threads), own_cpu_seconds(), time.perf_counter()
    busy0 = machine_busy_seconds()
    measuring(True)
    await asyncio.sleep(seconds)
    measuring(False)
    busy1 = machine_busy_seconds()
    after, own1, wall1 = snapshot(root, threads), own_cpu_seconds(), time.perf_counter()
    return WindowCpu(tree_cpu(root, before, after), own1 - own0, wall1 - wall0, busy1 - busy0)
