"""CPU of a server's whole process tree between two instants, split by role and thread.

Why a tree: the server under test is never one process. Inline it is the serve process and its
embedded redis-server; on Ray it is the driver, gateway and shard workers, and Ray's own daemons.
All are descendants of the serve process (started pinned, so they inherit the pin) and all their
CPU is what the deployment costs, so every one is counted, and split by role to show where it goes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .procstat import (
    ProcessCpu,
    affinity,
    command_line,
    context_switches,
    cpu_by_pid,
    cpu_delta,
    process_tree,
    thread_cpu,
)

ROLES = ("serve", "gateway", "shard", "ray-system", "redis")
"""Process roles of the server tree, in report order (see :func:`role_of`)."""


def role_of(pid: int, root: int) -> str:
    """Which part of the server ``pid`` is (see :data:`ROLES`), from its command line.

    ``serve`` is the root: the whole server inline (and the whole baseline server), the supervising
    driver on Ray. Ray sets a worker's process title to ``ray::<ActorClass>`` once it hosts an actor.
    Everything else on Ray (gcs_server, raylet, dashboard, agents, monitors, idle workers) is
    ``ray-system``.
    """
    if pid == root:
        return "serve"
    line = command_line(pid)
    if line.startswith("ray::GatewayHost"):
        return "gateway"
    if line.startswith("ray::ShardHost"):
        return "shard"
    if Path(line.split(" ", 1)[0]).name.startswith("redis-server"):
        return "redis"
    return "ray-system"


@dataclass
class Snapshot:
    """CPU so far of every process of the server tree, and of every thread when asked for."""

    processes: dict[int, ProcessCpu]
    threads: dict[int, dict[int, tuple[str, str, float]]] | None
    switches: dict[int, int] | None
    """Context switches so far by pid (all threads), with ``threads=True``."""


def snapshot(root: int, threads: bool = False) -> Snapshot:
    """Read the server tree's CPU counters now (re-walking the tree: new processes are included)."""
    pids = process_tree(root)
    if not threads:
        return Snapshot(cpu_by_pid(pids), None, None)
    per_thread = {pid: thread_cpu(pid) for pid in pids}
    return Snapshot(cpu_by_pid(pids), per_thread, {pid: context_switches(pid) for pid in pids})


@dataclass
class TreeCpu:
    """Server-tree CPU between two snapshots: total, kernel part, by role and by thread name."""

    user: float
    system: float
    by_role: dict[str, float]
    by_thread: dict[str, dict[str, float]]
    """Seconds by role, then by thread name (only with thread snapshots)."""
    switches: dict[str, int]
    """Context switches by role (only with thread snapshots)."""
    pids: int
    cpus: list[int]
    """Union of the cpus the tree's processes may run on (should be just the server's core)."""
    role_pids: dict[str, list[int]]

    @property
    def total(self) -> float:
        """User + system seconds."""
        return self.user + self.system


def tree_cpu(root: int, before: Snapshot, after: Snapshot) -> TreeCpu:
    """Sum and split the CPU the server tree used between ``before`` and ``after``."""
    delta = cpu_delta(before.processes, after.processes)
    by_role: defaultdict[str, float] = defaultdict(float)
    by_thread: dict[str, defaultdict[str, float]] = {}
    switches: Counter[str] = Counter()
    role_pids: dict[str, list[int]] = {}
    cpus: set[int] = set()
    for pid, (user, system) in delta.items():
        role = role_of(pid, root)
        by_role[role] += user + system
        role_pids.setdefault(role, []).append(pid)
        cpus |= affinity(pid)
        if before.threads is not None and after.threads is not None:
            old = before.threads.get(pid, {})
            names = by_thread.setdefault(role, defaultdict(float))
            for tid, (name, started, seconds) in after.threads.get(pid, {}).items():
                previous = old.get(tid)
                names[name] += seconds - previous[2] if previous and previous[1] == started else seconds
        if before.switches is not None and after.switches is not None and pid in after.switches:
            same = pid in before.processes and before.processes[pid].started == after.processes[pid].started
            switches[role] += after.switches[pid] - (before.switches.get(pid, 0) if same else 0)
    return TreeCpu(
        user=sum(u for u, _ in delta.values()),
        system=sum(s for _, s in delta.values()),
        by_role={role: by_role.get(role, 0.0) for role in ROLES},
        by_thread={role: dict(names) for role, names in by_thread.items()},
        switches=dict(switches),
        pids=len(delta),
        cpus=sorted(cpus),
        role_pids=role_pids,
    )


@dataclass
class Idle:
    """The server tree's CPU share at rest: total, by role, by role and thread name."""

    share: float = 0.0
    by_role: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROLES, 0.0))
    by_thread: dict[str, dict[str, float]] = field(default_factory=dict)


async def measure_idle(root: int, seconds: float, threads: bool) -> Idle:
    """The server tree's CPU at rest over ``seconds`` (clients connected, nothing sent).

    It is subtracted from the window's CPU to give the "net" figure: Ray's daemons and timers cost
    several % of a core with no traffic, which dominates per-delivery CPU at low rates.
    """
    if seconds <= 0:
        return Idle()
    before, wall0 = snapshot(root, threads), time.perf_counter()
    await asyncio.sleep(seconds)
    after, wall1 = snapshot(root, threads), time.perf_counter()
    used = tree_cpu(root, before, after)
    elapsed = wall1 - wall0
    return Idle(
        used.total / elapsed,
        {role: value / elapsed for role, value in used.by_role.items()},
        {role: {n: v / elapsed for n, v in names.items()} for role, names in used.by_thread.items()},
    )
