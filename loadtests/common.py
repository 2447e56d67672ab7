"""Shared pieces of the load scripts: the server under test, its CPU from /proc, pinning, reporting.

Why a module: ``echo_baseline.py`` and ``fanout.py`` must measure the same way (same process-tree
walk, same CPU fields, same pinning rules, same percentile), or their numbers would not compare.
The scripts import it as ``common`` (they are run as ``python loadtests/<script>.py``, which puts
this folder first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
"""Repository root: servers are started from here (their app paths are relative to it)."""

HOST = "127.0.0.1"
"""The only address the load scripts ever talk to."""

SATURATED = 0.90
"""Share of one core above which a process is reported as the limit (generator- or server-bound)."""

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

CLK_TCK = os.sysconf("SC_CLK_TCK")

READY_LINE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
"""What every target prints on stdout once it accepts connections."""


# -- processes and their CPU ----------------------------------------------------------------------


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


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """``(user, system)`` CPU seconds of ``pids``, reaped children included (a gone pid counts 0)."""
    usage = cpu_by_pid(pids).values()
    return sum(u.user for u in usage), sum(u.system for u in usage)


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


# -- the server under test ------------------------------------------------------------------------


@dataclass
class ServerUnderTest:
    """A started target: its process, port and the banner it printed."""

    target: str
    process: asyncio.subprocess.Process
    port: int
    banner: str
    stderr_log: IO[bytes]

    @property
    def uri(self) -> str:
        """WebSocket URI of the server."""
        return f"ws://{HOST}:{self.port}/"

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the server wrote on stderr (for failure messages)."""
        self.stderr_log.seek(0)
        return self.stderr_log.read().decode(errors="replace")[-limit:]


class ServerStartError(RuntimeError):
    """A target exited or stayed silent instead of printing its ready line."""


@contextlib.asynccontextmanager
async def running_server(
    target: str, command: Sequence[str], cpu: int | None, startup_timeout: float = STARTUP_TIMEOUT_S
) -> AsyncIterator[ServerUnderTest]:
    """Start ``command`` pinned to ``cpu`` (``taskset -c``), wait for its ready line, stop it after.

    Stopping is SIGTERM (every target shuts down cleanly on it), then SIGKILL after a timeout; any
    descendant still alive afterwards (it should die with its parent) is sent SIGTERM by pid. The
    descendants are those seen at start; a Ray server's workers are among them.
    """
    argv = list(command)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    with tempfile.TemporaryFile() as stderr_log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_log,
        )
        assert process.stdout is not None
        drain: asyncio.Task[None] | None = None
        descendants: list[tuple[int, str]] = []
        try:
            try:
                banner, port = await asyncio.wait_for(read_ready_line(process.stdout), startup_timeout)
            except TimeoutError:
                banner, port = f"no ready line within {startup_timeout:g} s", 0
            server = ServerUnderTest(target, process, port, banner, stderr_log)
            if port == 0:
                tail = server.stderr_tail()
                raise ServerStartError(f"{target} did not become ready ({banner}); stderr:\n{tail}")
            drain = asyncio.create_task(discard(process.stdout))
            descendants = [(pid, start_time(pid)) for pid in process_tree(process.pid)[1:]]
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            for pid, started in descendants:
                if start_time(pid) == started:  # still that very process, not a reused pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            if drain is not None:
                drain.cancel()


async def read_ready_line(stdout: asyncio.StreamReader) -> tuple[str, int]:
    """Read stdout until the ready line: ``(line, port)``, or ``(reason, 0)`` if the process exits."""
    while line := await stdout.readline():
        text = line.decode(errors="replace").strip()
        match = READY_LINE.search(text)
        if match:
            return text, int(match.group(1))
    return "exited before its ready line", 0


async def discard(stream: asyncio.StreamReader) -> None:
    """Keep reading a pipe so the server can never block on a full stdout."""
    while await stream.read(65536):
        pass


# -- pinning and the event loop -------------------------------------------------------------------


def add_pinning_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server-cpu``, ``--client-cpu`` and ``--no-pin``, the same in every load script."""
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server [default: 0]")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for this generator [default: 1]")
    parser.add_argument("--no-pin", action="store_true", help="do not pin (e.g. on a one-core machine)")


def check_pinning(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate the pinning arguments (two distinct usable cores, ``taskset`` present).

    With ``--no-pin`` both cpus become None, which every caller treats as "do not pin".
    """
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
        return
    available = os.sched_getaffinity(0)
    cpus = {args.server_cpu, args.client_cpu}
    if len(cpus) != 2 or not cpus <= available:
        parser.error(f"need two distinct cpus among {sorted(available)} (or --no-pin)")
    if shutil.which("taskset") is None:
        parser.error("taskset (util-linux) is needed to pin the server (or --no-pin)")


def run_pinned(main: Callable[[], Coroutine[Any, Any, int]], cpu: int | None) -> int:
    """Pin this process to ``cpu`` (unless None), then run ``main()`` on uvloop when installed."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def loop_name() -> str:
    """Which event loop the generator runs on (``uvloop`` or ``asyncio``)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# -- numbers and output ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def fmt_num(value: float | None) -> str:
    """One decimal, or ``-`` for a missing value."""
    return "-" if value is None else f"{value:.1f}"


def log(message: str) -> None:
    """Progress and tables go to stderr; stdout carries only the JSON lines."""
    print(message, file=sys.stderr, flush=True)
