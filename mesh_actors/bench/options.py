"""What one ``mesh-actors bench`` invocation runs: :class:`BenchOptions`, with bounds and checks.

Bounded on purpose: the harness runs on small shared machines and must never turn into a soak
test (loopback only, at most 200 echo clients, 2000 subscribers, 60 s windows, 5000 publishes/s).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .pinning import pinning_problem
from .wsclient import CLIENT_KINDS

SCENARIOS = ("echo", "fanout")
RUNTIMES = ("inline", "ray")
MODES = ("flat", "rate")
BASELINE_LIBRARIES = ("websockets", "picows", "node")
REFERENCE_BASELINE = "websockets"
"""The gateway's own WebSocket library: ``baseline_ratio`` is relative to its baseline server."""

MAX_CLIENTS = 200
MAX_SUBSCRIBERS = 2000
MAX_DURATION_S = 60.0
MAX_RATE = 5000.0

BENCH_EXTRA = "pip install 'mesh-actors[bench]'"


class BenchConfigError(ValueError):
    """The options cannot be run; the message says what to change."""


@dataclass
class BenchOptions:
    """Scenarios, loads, timings, targets and outputs of one run (defaults: the full benchmark)."""

    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    runtimes: list[str] = field(default_factory=lambda: ["inline"])
    clients: list[int] = field(default_factory=lambda: [1, 50])
    """Echo: concurrent closed-loop clients, one run each."""
    subscribers: list[int] = field(default_factory=lambda: [100, 1000])
    """Fan-out: room sizes, one subscriber set each."""
    modes: list[str] = field(default_factory=lambda: list(MODES))
    """Fan-out: ``flat`` (closed loop, ``inflight`` publishes unanswered) and/or ``rate``."""
    rate: float = 50.0
    """Fan-out ``rate`` mode: publishes per second (open loop)."""
    inflight: int = 1
    duration: float = 10.0
    """Measured seconds per run."""
    warmup: float = 2.0
    """Unmeasured seconds before each window."""
    idle: float = 3.0
    """Fan-out: seconds of CPU-at-rest measurement per subscriber set (subtracted as ``net``)."""
    settle: float = 2.0
    """Fan-out: pause after a subscriber set joined or left, so its cleanup is not measured."""
    baselines: list[str] = field(default_factory=lambda: [REFERENCE_BASELINE])
    """Baseline servers to run too (empty: none). Ratios are to the ``websockets`` one."""
    client: str = "raw"
    """Generator client implementation (see :data:`~mesh_actors.bench.wsclient.CLIENT_KINDS`)."""
    gateways: int = 1
    """Gateway actors of a Ray server. One, like the shard hosts below: the server tree gets one
    core, and one gateway per core is the documented sizing (a second only adds a process)."""
    shard_hosts: int | None = 1
    """Processes hosting a Ray server's shards (None: the server's default, one per pair)."""
    colocate: bool = False
    """Ray server with ``--colocate``: the shards inside the gateways' processes (no shard hosts)."""
    serve_args: list[str] = field(default_factory=list)
    """Extra ``mesh-actors serve`` arguments (experiments)."""
    server_env: list[str] = field(default_factory=list)
    """``NAME=VALUE`` environment of the servers (experiments, e.g. ``RAY_*`` settings)."""
    threads: bool = False
    """Fan-out: split server CPU by thread name, count context switches."""
    profile: Path | None = None
    """Fan-out: ``py-spy record`` the mesh processes into this folder."""
    out: Path | None = None
    """Folder for the JSON lines file and the PNG plot (None: stdout only)."""
    name: str | None = None
    """File stem in ``out`` [default: ``bench-<runtimes>-<UTC time>``]."""
    server_cpu: int | None = 0
    generator_cpu: int | None = 1
    """Cores for the server tree and this generator (both None: no pinning)."""

    @classmethod
    def quick(cls) -> BenchOptions:
        """The CI smoke run: inline, tiny loads, sub-second windows; checks counts, not speed."""
        return cls(
            clients=[1, 5], subscribers=[20], duration=0.5, warmup=0.2, idle=0.0, settle=0.1, rate=100.0
        )

    def check(self) -> None:
        """Raise :class:`BenchConfigError` if these options cannot run here."""
        problems = []
        for name, values, allowed in (
            ("--scenario", self.scenarios, SCENARIOS),
            ("--runtime", self.runtimes, RUNTIMES),
            ("--mode", self.modes, MODES),
            ("--baseline-library", self.baselines, BASELINE_LIBRARIES),
        ):
            wrong = [v for v in values if v not in allowed]
            if wrong or (not values and name != "--baseline-library"):
                given = ", ".join(wrong) or "none"
                problems.append(f"{name} must be among {', '.join(allowed)}, not {given}")
        if self.client not in CLIENT_KINDS:
            problems.append(f"--client must be one of {', '.join(CLIENT_KINDS)}, not {self.client!r}")
        if not self.clients or any(not 1 <= c <= MAX_CLIENTS for c in self.clients):
            problems.append(f"--clients must be between 1 and {MAX_CLIENTS}")
        if not self.subscribers or any(not 1 <= s <= MAX_SUBSCRIBERS for s in self.subscribers):
            problems.append(f"--subscribers must be between 1 and {MAX_SUBSCRIBERS}")
        if not 0 < self.duration <= MAX_DURATION_S:
            problems.append(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds")
        for name, value in (("--warmup", self.warmup), ("--idle", self.idle), ("--settle", self.settle)):
            if not 0 <= value <= MAX_DURATION_S:
                problems.append(f"{name} must be in [0, {MAX_DURATION_S:g}] seconds")
        if not 0 < self.rate <= MAX_RATE:
            problems.append(f"--rate must be in (0, {MAX_RATE:g}] publishes per second")
        if not 1 <= self.inflight <= 64:
            problems.append("--inflight must be between 1 and 64")
        if not 1 <= self.gateways <= 8:
            problems.append("--gateways must be between 1 and 8")
        if self.shard_hosts is not None and not 1 <= self.shard_hosts <= 8:
            problems.append("--shard-hosts must be between 1 and 8")
        if any(not item.partition("=")[0] or "=" not in item for item in self.server_env):
            problems.append("--server-env needs NAME=VALUE")
        needs_picows = self.client == "picows" or "picows" in self.baselines
        if needs_picows and importlib.util.find_spec("picows") is None:
            problems.append(f"picows (--client picows, --baseline-library picows) is missing: {BENCH_EXTRA}")
        if "node" in self.baselines:
            from .node_reference import problem

            node_problem = problem()
            if node_problem:
                problems.append(node_problem)
        if "ray" in self.runtimes and importlib.util.find_spec("ray") is None:
            problems.append("--runtime ray needs Ray: pip install 'mesh-actors[ray]'")
        if self.profile is not None and shutil.which("py-spy") is None:
            problems.append("--profile needs py-spy (pip install py-spy)")
        pinning = pinning_problem(self.server_cpu, self.generator_cpu)
        if pinning:
            problems.append(pinning)
        if problems:
            raise BenchConfigError("; ".join(problems))
