"""Process CPU from ``/proc``: the meter behind every "server CPU per op" figure of the harness.

Why ``/proc`` and not wall-clock throughput: on a small shared machine throughput moves with the
neighbours, but the CPU time the kernel charged to the server's processes per op barely does. psutil
would read the same files; it is not a dependency of mesh-actors, and the harness needs a few
fields (``utime``/``stime`` plus the reaped-children ``c`` fields, the start time to tell a reused
pid apart, per-thread names and context switches) that are a few lines each. Linux only.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
"""Kernel clock ticks per second: the unit of the CPU fields of ``/proc/<pid>/stat``."""


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after ``comm`` (so index 0 is field 3, ``state``), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses: cut at the last one.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot (field 22), "" if it is gone."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None else ""


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (e.g. the embedded redis-server), by scanning /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    tree: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclass(frozen=True)
class ProcessCpu:
    """CPU of one process so far, reaped children included: ``(utime + cutime, stime + cstime)``."""

    started: str
    """Start time in clock ticks (tells a process from a later one that reuses its pid)."""
    user: float
    system: float


def cpu_by_pid(pids: Sequence[int]) -> dict[int, ProcessCpu]:
    """CPU seconds of each live pid of ``pids`` (gone ones are left out).

    utime + cutime and stime + cstime: the ``c`` fields hold reaped children, so a helper that exits
    inside the window is not lost. System time matters here: on loopback, the writer's ``write()``
    also runs the receiving side of TCP, so much of a small-message server's CPU is kernel time.
    """
    result: dict[int, ProcessCpu] = {}
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None:
            user = (int(fields[11]) + int(fields[13])) / CLK_TCK
            system = (int(fields[12]) + int(fields[14])) / CLK_TCK
            result[pid] = ProcessCpu(fields[19], user, system)
    return result


def cpu_delta(before: dict[int, ProcessCpu], after: dict[int, ProcessCpu]) -> dict[int, tuple[float, float]]:
    """``(user, system)`` seconds each process used between two :func:`cpu_by_pid` snapshots.

    A process that started in between counts from zero; one that is gone counts zero (its time went
    to its parent's ``c`` fields if the parent reaped it).
    """
    delta: dict[int, tuple[float, float]] = {}
    for pid, end in after.items():
        begin = before.get(pid)
        if begin is None or begin.started != end.started:
            delta[pid] = (end.user, end.system)
        else:
            delta[pid] = (end.user - begin.user, end.system - begin.system)
    return delta


def thread_cpu(pid: int) -> dict[int, tuple[str, str, float]]:
    """``tid -> (thread name, start time, user + system seconds)`` for every live thread of ``pid``.

    Thread names are the kernel's ``comm`` (Ray's C++ threads name themselves, e.g. ``worker.io``;
    Python threads carry the process's name). Empty if the process is gone.
    """
    result: dict[int, tuple[str, str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return result
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        result[int(tid)] = (name, fields[19], (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return result


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every live thread of ``pid`` so far (0 if gone)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return total
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.rsplit(None, 1)[-1])
    return total


def own_cpu_seconds() -> float:
    """CPU time (user + system) of this generator process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def command_line(pid: int) -> str:
    """``/proc/<pid>/cmdline`` with spaces for NULs (Ray workers show their process title), "" if gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def affinity(pid: int) -> frozenset[int]:
    """The cpus ``pid`` may run on (empty if it is gone)."""
    try:
        return frozenset(os.sched_getaffinity(pid))
    except (ProcessLookupError, PermissionError):
        return frozenset()


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: everything but idle and iowait).

    Minus the server tree's and the generator's CPU over a window, this is what other processes
    used meanwhile: the harness reports it so a run on a busy shared machine can be recognized.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
