"""Local echo round-trip load: ops/s, latency and server CPU per op, for the gateway and baselines.

Why: this is the reference measurement that later performance work is compared against. It is
deliberately simple and honest: closed-loop clients on loopback, every request and response
counted (a single loss or wrong answer fails the run), server CPU read from the kernel rather
than inferred, and the load generator's own CPU reported so a generator-bound number is flagged
instead of being passed off as the server's limit.

What it does, per target (each started as a subprocess pinned to one core with ``taskset``):

* ``mesh``: ``python -m mesh_actors serve examples/chat.py:server`` (embedded Redis unless
  ``MESH_REDIS_URL`` is set; the redis-server child is pinned with it and its CPU is counted);
* ``baseline``: ``loadtests/baseline_echo_server.py``, the same protocol on ``websockets`` alone;
* ``baseline-picows``: ``loadtests/baseline_echo_server_picows.py``, the same on ``picows``.

For each scenario (C concurrent clients, default C=1 then C=50) the generator, pinned to another
core, opens C connections, waits for both ``assign-id`` pushes on each, runs a warm-up (default
2 s), then measures for T seconds (default 10 s): every client sends ``echo`` with a payload holding
its send timestamp, awaits the response, checks it, and repeats. It reports:

* ``ops_per_s``: correct responses completed in the window / window length;
* ``p50_us``, ``p99_us``: round trip from the echoed send timestamp;
* ``server_cpu_us_per_op``: utime+stime (+ reaped children) of the server process and every
  descendant, from ``/proc/<pid>/stat``, over the window, per op (``server_sys_us_per_op``: the
  kernel part); ``server_cpu_pct`` is the same over wall time (100 = one core busy);
* ``generator_cpu_pct``, ``generator_cpu_us_per_op`` and ``generator_saturated`` (>= 90 % of its
  core): when set, ops/s is the generator's limit, not the server's;
* ``limit``: what bounded ops/s. ``server`` or ``generator`` when that side used >= 90 % of its core;
  ``round-trip`` when neither did: each side spent part of the window waiting for the other. That is
  expected at C=1; at higher C it means the two processes took turns instead of overlapping, and
  ops/s is then close to 1e6 / (server + generator us per op).

``server_cpu_us_per_op`` does not depend on which side was the limit, so it is the number to
compare between targets and runs; ops/s on a small shared machine is much noisier.

Output: one JSON object per line on stdout per (target, scenario), then a table on stderr, so
``... > results.jsonl`` keeps only the data. Exit status 1 if any request was lost, any response was
wrong, a client failed, or a server did not start.

Examples::

    python loadtests/echo_baseline.py                       # mesh and baseline, C=1 and C=50
    python loadtests/echo_baseline.py --target mesh --target baseline --target baseline-picows
    python loadtests/echo_baseline.py --quick               # C=1 and C=5, 1 s each: a smoke test

Bounded on purpose: loopback only, at most 200 clients and 120 s per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import orjson
from common import (
    SATURATED,
    ServerStartError,
    ServerUnderTest,
    add_pinning_arguments,
    check_pinning,
    cpu_seconds,
    fmt_num,
    log,
    loop_name,
    own_cpu_seconds,
    percentile,
    process_tree,
    run_pinned,
    running_server,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

MAX_CLIENTS = 200
MAX_DURATION_S = 120.0
"""Hard bounds: this runs on small shared machines and must never turn into a soak test."""

CONNECT_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 5.0
"""After the window, how long outstanding requests may take before they count as lost."""
SERVER_COMMANDS: dict[str, list[str]] = {
    "mesh": [sys.executable, "-m", "mesh_actors", "serve", "examples/chat.py:server", "--port", "0"],
    "baseline": [sys.executable, "loadtests/baseline_echo_server.py", "--port", "0"],
    "baseline-picows": [sys.executable, "loadtests/baseline_echo_server_picows.py", "--port", "0"],
}
"""How each target is started (``--port 0``: the ready line says which port it got)."""

_PONG = orjson.dumps({"command": "pong", "payload": {}})


# -- clients --------------------------------------------------------------------------------------


@dataclass
class Window:
    """Phase flags shared by the clients of one scenario (set by the conductor only)."""

    clients: int
    """How many clients take part."""
    settled: int = 0
    """Clients that are connected (or failed to): the conductor waits for all of them."""
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every client is connected: the closed loops start together."""
    measuring: bool = False
    """True inside the measured window: completions are counted and their latency kept."""
    stopping: bool = False
    """Set after the window: each client finishes its outstanding request and disconnects."""

    def settle(self) -> None:
        """A client is connected, or gave up connecting."""
        self.settled += 1
        if self.settled >= self.clients:
            self.all_settled.set()


@dataclass
class ClientStats:
    """What one client saw. ``sent - answered`` at the end is the number of lost requests."""

    sent: int = 0
    answered: int = 0
    """Responses (frames with an ``id``) received, right or wrong."""
    wrong: int = 0
    """Responses whose id, command or payload differ from the request (or that are not JSON)."""
    ops: int = 0
    """Correct responses completed inside the measured window."""
    latencies_ns: list[int] = field(default_factory=list)
    connected: bool = False
    error: str | None = None


async def _await_identity(websocket: ClientConnection) -> None:
    """Read the connection's first pushes until both ``assign-id`` frames (mesh/ and rt/) arrived."""
    missing = {"mesh/assign-id", "rt/assign-id"}
    while missing:
        frame = orjson.loads(await websocket.recv(decode=False))
        if isinstance(frame, dict):
            missing.discard(frame.get("command"))


async def run_client(index: int, uri: str, window: Window, stats: ClientStats) -> None:
    """One closed-loop client: send ``echo``, await its response, check it, repeat until stopped.

    Pushes without an ``id`` (``ping``, ``latency``, ``welcome``...) are skipped; ``ping`` is
    answered with ``pong`` so runs longer than the server's ping interval stay connected.
    """
    settled = False
    try:
        async with connect(
            uri, compression=None, ping_interval=None, proxy=None, open_timeout=CONNECT_TIMEOUT_S
        ) as websocket:
            await asyncio.wait_for(_await_identity(websocket), CONNECT_TIMEOUT_S)
            stats.connected, settled = True, True
            window.settle()
            await window.go.wait()
            send, recv, loads, dumps = websocket.send, websocket.recv, orjson.loads, orjson.dumps
            clock = time.perf_counter_ns
            latencies = stats.latencies_ns
            seq = 0
            while not window.stopping:
                seq += 1
                payload = {"t": clock(), "client": index, "seq": seq}
                await send(dumps({"id": seq, "command": "echo", "payload": payload}), text=True)
                stats.sent += 1
                while True:
                    try:
                        frame = loads(await recv(decode=False))
                    except orjson.JSONDecodeError:
                        stats.wrong += 1
                        continue
                    if type(frame) is dict and "id" in frame:
                        break
                    if type(frame) is dict and frame.get("command") == "ping":
                        await send(_PONG, text=True)
                done = clock()
                stats.answered += 1
                echoed = frame.get("payload")
                if frame["id"] != seq or frame.get("command") != "echo" or echoed != payload:
                    stats.wrong += 1
                elif window.measuring:
                    stats.ops += 1
                    latencies.append(done - echoed["t"])
    except (OSError, TimeoutError, ValueError, WebSocketException) as error:
        stats.error = f"client {index}: {error!r}"
    finally:
        if not settled:
            window.settle()


# -- one scenario ---------------------------------------------------------------------------------


async def run_scenario(
    server: ServerUnderTest, clients: int, warmup: float, duration: float
) -> dict[str, Any]:
    """Connect ``clients`` clients, warm up, measure for ``duration`` seconds, drain and disconnect."""
    window = Window(clients)
    stats = [ClientStats() for _ in range(clients)]
    tasks = [
        asyncio.create_task(run_client(i, server.uri, window, stats[i]), name=f"client-{i}")
        for i in range(clients)
    ]
    with contextlib.suppress(TimeoutError):
        # Each client settles within CONNECT_TIMEOUT_S (open_timeout, then the identity wait).
        await asyncio.wait_for(window.all_settled.wait(), 2 * CONNECT_TIMEOUT_S + 1)
    pids = process_tree(server.process.pid)
    window.go.set()
    if warmup > 0:
        await asyncio.sleep(warmup)

    (user0, sys0), own_cpu0, wall0 = cpu_seconds(pids), own_cpu_seconds(), time.perf_counter()
    window.measuring = True
    await asyncio.sleep(duration)
    window.measuring = False
    (user1, sys1), own_cpu1, wall1 = cpu_seconds(pids), own_cpu_seconds(), time.perf_counter()
    server_cpu = (user1 - user0) + (sys1 - sys0)

    window.stopping = True
    done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

    elapsed = wall1 - wall0
    ops = sum(s.ops for s in stats)
    latencies = sorted(value for s in stats for value in s.latencies_ns)
    sent = sum(s.sent for s in stats)
    answered = sum(s.answered for s in stats)
    generator_share = (own_cpu1 - own_cpu0) / elapsed
    server_share = server_cpu / elapsed
    if generator_share >= SATURATED:
        limit = "generator"
    elif server_share >= SATURATED:
        limit = "server"
    else:
        limit = "round-trip"
    errors = [s.error for s in stats if s.error]
    errors += [
        f"client {i}: no response within {DRAIN_TIMEOUT_S:g} s" for i, t in enumerate(tasks) if t in pending
    ]
    errors += [f"client {i}: {t.exception()!r}" for i, t in enumerate(tasks) if t in done and t.exception()]
    connected = sum(s.connected for s in stats)
    if connected < clients:
        errors.append(f"only {connected} of {clients} clients connected")
    return {
        "target": server.target,
        "server": server.banner,
        "clients": clients,
        "warmup_s": warmup,
        "duration_s": round(elapsed, 3),
        "ops": ops,
        "ops_per_s": round(ops / elapsed, 1),
        "p50_us": round(percentile(latencies, 50) / 1000, 1),
        "p99_us": round(percentile(latencies, 99) / 1000, 1),
        "server_cpu_us_per_op": round(server_cpu / ops * 1e6, 1) if ops else None,
        "server_sys_us_per_op": round((sys1 - sys0) / ops * 1e6, 1) if ops else None,
        "server_cpu_pct": round(server_share * 100, 1),
        "server_pids": len(pids),
        "generator_cpu_pct": round(generator_share * 100, 1),
        "generator_cpu_us_per_op": round((own_cpu1 - own_cpu0) / ops * 1e6, 1) if ops else None,
        "generator_saturated": generator_share >= SATURATED,
        "limit": limit,
        "sent": sent,
        "answered": answered,
        "lost": sent - answered,
        "wrong": sum(s.wrong for s in stats),
        "errors": errors[:10],
    }


def failed(result: dict[str, Any]) -> bool:
    """True if the scenario lost or garbled anything, or a client failed."""
    return bool(result["lost"] or result["wrong"] or result["errors"] or not result["ops"])


# -- report ---------------------------------------------------------------------------------------


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A fixed-width summary; ``x base`` columns are relative to the websockets baseline at the same C.

    ``ops x base`` above 1 is more throughput; ``cpu x base`` above 1 is more server CPU per op.
    """
    base = {r["clients"]: r for r in results if r["target"] == "baseline"}
    header = (
        f"{'target':<16} {'C':>4} {'ops/s':>8} {'ops x base':>10} {'p50 us':>7} {'p99 us':>7} "
        f"{'srv us/op':>9} {'(sys)':>6} {'cpu x base':>10} {'srv cpu%':>8} {'gen cpu%':>8} "
        f"{'gen us/op':>9}  limit"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ref = base.get(r["clients"])
        ops_ratio = cpu_ratio = "-"
        if ref is not None and ref["ops_per_s"]:
            ops_ratio = f"{r['ops_per_s'] / ref['ops_per_s']:.2f}"
        if ref is not None and ref["server_cpu_us_per_op"] and r["server_cpu_us_per_op"]:
            cpu_ratio = f"{r['server_cpu_us_per_op'] / ref['server_cpu_us_per_op']:.2f}"
        notes = [r["limit"]]
        if failed(r):
            notes.append(f"FAILED lost={r['lost']} wrong={r['wrong']} errors={len(r['errors'])}")
        lines.append(
            f"{r['target']:<16} {r['clients']:>4} {r['ops_per_s']:>8.0f} {ops_ratio:>10} {r['p50_us']:>7.0f} "
            f"{r['p99_us']:>7.0f} {fmt_num(r['server_cpu_us_per_op']):>9} "
            f"{fmt_num(r['server_sys_us_per_op']):>6} {cpu_ratio:>10} "
            f"{r['server_cpu_pct']:>8.1f} {r['generator_cpu_pct']:>8.1f} "
            f"{fmt_num(r['generator_cpu_us_per_op']):>9}  {', '.join(notes)}"
        )
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    """Run every scenario against every target in turn; returns the exit status."""
    results: list[dict[str, Any]] = []
    status = 0
    for target in args.target:
        try:
            async with running_server(target, SERVER_COMMANDS[target], args.server_cpu) as server:
                log(f"[{target}] {server.banner}")
                for clients in args.clients:
                    log(f"[{target}] C={clients}: warm-up {args.warmup:g} s, measuring {args.duration:g} s")
                    result = await run_scenario(server, clients, args.warmup, args.duration)
                    print(json.dumps(result), flush=True)
                    results.append(result)
                    if failed(result):
                        status = 1
                        log(f"[{target}] C={clients} FAILED: {result['errors'] or 'lost or wrong responses'}")
                    if result["generator_saturated"]:
                        log(
                            f"[{target}] C={clients}: the generator used {result['generator_cpu_pct']}% "
                            "of its core, so this ops/s is the generator's limit; compare server us/op"
                        )
        except ServerStartError as error:
            log(str(error))
            status = 1
    if results:
        log("")
        log(format_table(results))
        log(
            f"\nserver on cpu {args.server_cpu}, generator on cpu {args.client_cpu} "
            f"(websockets {version('websockets')} client, {loop_name()}); srv = server process tree"
        )
    return status


def _clients_list(text: str) -> list[int]:
    """Parse ``--clients 1,50`` into ``[1, 50]`` within the bounds."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(not 1 <= v <= MAX_CLIENTS for v in values):
        raise argparse.ArgumentTypeError(f"client counts must be between 1 and {MAX_CLIENTS}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line, with ``--quick`` overriding the scenario list and timings."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(SERVER_COMMANDS),
        help="server to load; repeat for several [default: mesh and baseline]",
    )
    parser.add_argument("--clients", type=_clients_list, default=[1, 50], help="comma list [default: 1,50]")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds [default: 10]")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first [default: 2]")
    parser.add_argument("--quick", action="store_true", help="smoke test: C=1 and C=5, 1 s each, no warm-up")
    add_pinning_arguments(parser)
    args = parser.parse_args(argv)
    args.target = args.target or ["mesh", "baseline"]
    if args.quick:
        args.clients, args.duration, args.warmup = [1, 5], 1.0, 0.0
    if not 0 < args.duration <= MAX_DURATION_S or not 0 <= args.warmup <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}] and --warmup in [0, {MAX_DURATION_S:g}]")
    check_pinning(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Pin this process, then run on uvloop when it is installed."""
    args = parse_args(argv)
    return run_pinned(lambda: run(args), args.client_cpu)


if __name__ == "__main__":
    sys.exit(main())
