"""``mesh-actors bench``: the benchmark harness (echo round trip, room fan-out, baselines, plot).

It starts each server under test as a subprocess pinned to one core (``taskset``; its embedded
Redis and, on Ray, every Ray process inherit the pin), drives it from this process pinned to the
other core with a cheap asyncio WebSocket client, reads the server tree's CPU from ``/proc``, and
prints one JSON line per scenario plus tables. A framework-free baseline server on the same
WebSocket library runs in the same invocation, and every record carries ``baseline_ratio`` (server
CPU per op or delivery relative to it). Method and results: docs/performance.md.

Modules, one concept each: :mod:`.procstat` (reading ``/proc``), :mod:`.treecpu` (a server tree's
CPU by role), :mod:`.window` (one measured window), :mod:`.pinning`, :mod:`.servers` (starting the
targets), :mod:`.app` (the mesh-actors app under test), :mod:`.baseline` / :mod:`.baseline_picows`
(the baseline servers), :mod:`.wsclient` (the generator's clients), :mod:`.echo` and :mod:`.fanout`
(the scenarios), :mod:`.profiling` (optional py-spy), :mod:`.report` (JSON lines, ratios, tables),
:mod:`.plot` (PNG), :mod:`.options` and :mod:`.harness` (what runs, and running it).

Python use: ``run_bench(BenchOptions.quick())`` (it runs its own event loop: call it from sync code).
"""

from __future__ import annotations

from .harness import BenchRun, run_bench
from .options import BenchConfigError, BenchOptions

__all__ = ["BenchConfigError", "BenchOptions", "BenchRun", "run_bench"]
