"""A machine-speed reference, so absolute CPU figures can be compared across machines and days.

Why: the same code measured 22 µs per echo one day and 56 µs on another "2-core machine" of the
same kind, with no foreign load either time. Ratios to a baseline measured in the same run cancel
that out; absolute targets (µs per delivery) do not. Each record therefore carries the time one
iteration of a fixed pure-Python loop took on the server's core in the same run, so an absolute
figure can be read against the speed of the machine that produced it.
"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["python_loop_ns"]

_LOOP = """
import os, sys, time
if {cpu!r} is not None:
    os.sched_setaffinity(0, {{{cpu!r}}})
best = float("inf")
for _ in range(5):
    start = time.perf_counter_ns()
    total = 0
    for i in range({n}):
        total += i
    best = min(best, time.perf_counter_ns() - start)
print(best / {n})
"""

ITERATIONS = 1_000_000


def python_loop_ns(cpu: int | None, iterations: int = ITERATIONS) -> float:
    """Nanoseconds per iteration of ``for i in range(n): total += i`` (best of 5) on ``cpu``.

    Run in a fresh interpreter so that nothing of the harness (imports, threads) is in the way.
    About 30 ns on a recent desktop core; the machine of docs/performance.md measured 60-200 ns.
    """
    code = _LOOP.format(cpu=cpu, n=iterations)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return round(float(result.stdout.strip()), 1)
