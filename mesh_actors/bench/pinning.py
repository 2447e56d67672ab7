"""Pinning: the server tree on one core, the load generator on another (``taskset``).

Why: on a two-core machine, a server and a generator that float between cores steal each other's
cycles and caches, and the numbers then measure the scheduler. Started under ``taskset -c N``, the
server's whole tree (its embedded redis-server, Ray's daemons and workers) inherits the affinity;
the generator pins itself with ``sched_setaffinity``. The harness checks the tree afterwards and
reports ``server_cpus`` in every result.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def pinning_problem(server_cpu: int | None, generator_cpu: int | None) -> str | None:
    """Why these cpus cannot be used (None if they can, or if pinning is off: both None)."""
    if server_cpu is None and generator_cpu is None:
        return None
    if server_cpu is None or generator_cpu is None:
        return "give both --server-cpu and --generator-cpu, or --no-pin"
    available = os.sched_getaffinity(0)
    if server_cpu == generator_cpu or not {server_cpu, generator_cpu} <= available:
        return f"need two distinct cpus among {sorted(available)} (or --no-pin on a one-core machine)"
    if shutil.which("taskset") is None:
        return "taskset (util-linux) is needed to pin the server (or --no-pin)"
    return None


def pinned_argv(argv: list[str], cpu: int | None) -> list[str]:
    """``argv`` run under ``taskset -c cpu`` (unchanged when ``cpu`` is None)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def run_pinned(main: Callable[[], Coroutine[Any, Any, T]], cpu: int | None) -> T:
    """Pin this process to ``cpu`` (unless None), run ``main()`` on uvloop when installed, unpin.

    The previous affinity is restored afterwards, so a caller (a test process) is left as it was.
    """
    previous = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main())
        return uvloop.run(main())
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, previous)


def loop_name() -> str:
    """Which event loop the generator runs on (``uvloop`` or ``asyncio``)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
