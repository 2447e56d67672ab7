"""Room fan-out load on the inline and Ray runtimes: deliveries/s, latency and server CPU per delivery.

Why: a room broadcast is the framework's hot path, and the Ray runtime adds processes, a data-plane
hop and Ray's own daemons to it. This script answers, on one machine, how many deliveries per second
each runtime makes and how much server CPU one delivery costs (the issue's target: Ray within 1.25x
of inline), and where the Ray runtime's CPU goes (mesh actor workers vs Ray's system processes).

What it does, per runtime (the server is ``python -m mesh_actors serve loadtests/fanout_app.py:server
--runtime inline|ray --port 0`` started under ``taskset -c <server cpu>``; Ray's daemons and workers
are its descendants and inherit the pin, which is checked and reported as ``server_cpus``):

* for each subscriber count S: S clients connect and send ``mesh/join-room {"roomName": <room>}``
  (each awaits its answer), and one publisher client connects; the server tree's CPU at rest is
  measured for ``--idle`` seconds (``idle_cpu_pct``: timers, Ray's periodic work...);
* for each mode: the publisher sends ``publish {roomName, payload: {r, s, t}}`` (run, sequence
  number, send time in ns), either ``flat`` (closed loop: the next after the previous answer;
  ``--inflight N`` keeps N unanswered) or ``rate`` (open loop, ``--rate`` per second); after
  ``--warmup`` seconds a window of ``--duration`` seconds is measured; then the publisher stops and
  the script waits until every subscriber has received every message (or ``DRAIN_TIMEOUT_S``).

Reported per run (one JSON object per line on stdout, tables on stderr):

* ``deliveries_per_s``: ``room-message`` frames received by the subscribers inside the window;
  ``published_per_s``: publishes sent inside the window;
* ``p50_us``/``p99_us``: delivery latency, receive time minus the payload's send time. It includes
  the generator's own queueing: at S=1000 a message is read by 1000 sockets one after the other;
* ``server_cpu_us_per_delivery``: utime+stime (+ reaped children) of the server process and every
  descendant, from ``/proc``, over the window, per delivery (``_sys_``: its kernel part);
  ``server_net_cpu_us_per_delivery`` subtracts the idle CPU measured before (what the deliveries
  themselves cost); ``cpu_us_per_delivery_by_role`` splits it by process: ``serve`` (the serve
  process: everything for inline, the supervising driver for Ray), ``gateway`` and ``shard`` (Ray
  workers titled ``ray::GatewayHost`` / ``ray::ShardHost``), ``ray-system`` (gcs_server, raylet,
  dashboard, agents, monitors, idle workers) and ``redis`` (the embedded redis-server);
* ``lost``: ``published x S - received`` after the drain; ``disorder``: messages a subscriber saw
  with a sequence number not above the previous one; ``backlog_at_end``: deliveries still in flight
  when the window closed (large means the window was not in a steady state);
* ``generator_cpu_pct`` / ``generator_saturated`` (>= 90 % of its core) and ``limit``: ``generator``
  or ``server`` when that side was saturated, ``rate`` for the open-loop mode, else ``round-trip``;
* with ``--threads``: ``threads`` (CPU by role and thread name, in the window and at rest; Ray's C++
  threads name themselves, its asyncio thread shows as ``ray::IDLE``) and
  ``context_switches_per_publish`` by role; with ``--profile DIR``: ``py-spy record`` of the serve,
  gateway and shard processes during the window (raw stacks in DIR, top frames in ``profile``).
  Sampling slows a Ray server a lot: use profiled runs for where the time goes, not for numbers.

The subscribers are a minimal WebSocket client on asyncio protocols (``--client raw``, the
default): it parses server frames itself and masks its few outbound frames, about half the
generator CPU per received message of the ``websockets`` client (``--client websockets``, kept to
compare). ``ping`` pushes are answered with ``pong``; ``latency*`` and ``assign-id`` are ignored.

Output: ``... > results.jsonl`` keeps only the JSON lines. Exit status 1 if a delivery was lost or
out of order, a publish failed, a client failed or a server did not start.

Examples::

    python loadtests/fanout.py                                  # inline and ray, S=100,1000, flat and rate
    python loadtests/fanout.py --runtime ray --subscribers 1000 --mode rate --rate 50
    python loadtests/fanout.py --quick                          # inline, S=20, 1 s: a smoke test
    python loadtests/fanout.py --runtime ray --threads           # + CPU by thread, context switches
    python loadtests/fanout.py --runtime ray --profile /tmp/prof   # py-spy the mesh processes
    python loadtests/fanout.py --runtime ray --gateways 1 --server-env MESH_ROOM_SHARDS=1  # variants

Results and their analysis: ``docs/performance.md``.

Bounded on purpose: loopback only, at most 2000 subscribers, 60 s windows and 5000 publishes/s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import sys
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import orjson
from common import (
    HOST,
    SATURATED,
    ProcessCpu,
    ServerStartError,
    ServerUnderTest,
    add_pinning_arguments,
    affinity,
    check_pinning,
    command_line,
    context_switches,
    cpu_by_pid,
    cpu_delta,
    fmt_num,
    log,
    loop_name,
    own_cpu_seconds,
    percentile,
    process_tree,
    run_pinned,
    running_server,
    thread_cpu,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

APP = "loadtests/fanout_app.py:server"
"""The server under test (relative to the repository root)."""

RUNTIMES = ("inline", "ray")
MODES = ("flat", "rate")
ROLES = ("serve", "gateway", "shard", "ray-system", "redis")
"""Process roles of the server tree, in report order (see :func:`role_of`)."""

MAX_SUBSCRIBERS = 2000
MAX_DURATION_S = 60.0
MAX_RATE = 5000.0
"""Hard bounds: this runs on small shared machines and must never turn into a soak test."""

STARTUP_TIMEOUT_S = {"inline": 30.0, "ray": 180.0}
"""A local Ray takes ~5 s to start on two free cores, longer squeezed onto one."""
CONNECT_TIMEOUT_S = 120.0
"""For connecting and joining a whole subscriber set."""
CONNECT_CONCURRENCY = 50
"""Handshakes in flight at once (the joins' answers list every member: O(S^2) bytes in total)."""
SETTLE_S = 2.0
"""Pause after a subscriber set joined or left, so its cleanup does not land in a measurement."""
DRAIN_TIMEOUT_S = 20.0
"""After the window, how long the deliveries still in flight may take before they count as lost."""
COMMAND_TIMEOUT_S = 30.0
"""A publish without an answer for this long fails the run."""
CLOSE_TIMEOUT_S = 3.0

_PONG = orjson.dumps({"command": "pong", "payload": {}})
_CLOSE_NORMAL = (1000).to_bytes(2, "big")
_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


# -- what the generator saw -----------------------------------------------------------------------


@dataclass
class Hub:
    """Counters shared by every client of the generator (one event loop: plain attributes suffice)."""

    run: int = 0
    """Id of the current run; ``room-message`` frames of another run are counted as ``stale``."""
    measuring: bool = False
    """True inside the measured window."""
    received: int = 0
    """``room-message`` frames of the current run, whenever they arrived."""
    window: int = 0
    """... of which inside the window."""
    stale: int = 0
    disorder: int = 0
    garbled: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    """Delivery latencies (ns) of the frames received inside the window."""
    clients: list[Client] = field(default_factory=list)

    def start_run(self) -> None:
        """Forget the previous run: a new id, zero counters, sequence tracking reset per client."""
        self.run += 1
        self.measuring = False
        self.received = self.window = self.stale = self.disorder = self.garbled = 0
        self.latencies = array("q")
        for client in self.clients:
            client.last_seq = 0


class Client:
    """What both client implementations share: the handling of every text frame the server sends.

    ``room-message`` is the hot path (one call per delivery), so it is handled first and inline.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.last_seq = 0
        self.received = 0
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        """Resolved when the connection is gone."""

    def on_text(self, data: bytes, now: int) -> None:
        """One text frame from the server, received at ``now`` (perf_counter_ns)."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.hub.garbled += 1
            return
        if type(message) is not dict:
            self.hub.garbled += 1
            return
        command = message.get("command")
        if command == "room-message":
            body = message["payload"]
            hub = self.hub
            if body["r"] != hub.run:
                hub.stale += 1
                return
            seq = body["s"]
            if seq <= self.last_seq:
                hub.disorder += 1
            self.last_seq = seq
            self.received += 1
            hub.received += 1
            if hub.measuring:
                hub.window += 1
                hub.latencies.append(now - body["t"])
        elif "id" in message:
            future = self._pending.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message.get("payload"))
        elif command == "ping":
            self.send(_PONG)

    def command(self, name: str, payload: Any) -> asyncio.Future[Any]:
        """Send a command; the future resolves to the response payload."""
        self._next_id += 1
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[self._next_id] = future
        self.send(orjson.dumps({"id": self._next_id, "command": name, "payload": payload}))
        return future

    def send(self, data: bytes) -> None:
        """Send one text frame (fire and forget)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection (closing handshake, bounded)."""
        raise NotImplementedError

    def _gone(self, reason: str) -> None:
        """The connection is lost: fail what waits for an answer."""
        if not self.closed.done():
            self.closed.set_result(None)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))


def client_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 section 5.3: clients mask what they send)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(length, "big")
    return header + key + masked


class RawClient(Client, asyncio.Protocol):
    """A minimal WebSocket client on an asyncio protocol: the cheapest way to read many sockets.

    It sends the upgrade request without extensions (no compression), checks for ``101``, then
    parses unmasked server frames straight from ``data_received``. The server never fragments
    messages, so continuation frames are not supported (they would be counted as garbled).
    """

    def __init__(self, hub: Hub, host: str, port: int) -> None:
        super().__init__(hub)
        key = base64.b64encode(os.urandom(16)).decode()
        self._request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._upgraded = False
        self.opened: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        self._gone(f"connection lost: {exc!r}")

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._rest:
            data, self._rest = self._rest + data, b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._rest = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                status = data[: data.find(b"\r\n")].decode(errors="replace")
                self.opened.set_exception(ConnectionError(f"upgrade refused: {status}"))
                assert self._transport is not None
                self._transport.close()
                return
            self._upgraded = True
            self.opened.set_result(None)
            data = data[end + 4 :]
        size = len(data)
        pos = 0
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            if opcode == _OP_TEXT:
                self.on_text(data[start:end], now)
            elif opcode == _OP_PING:
                self._write(client_frame(data[start:end], _OP_PONG))
            elif opcode != _OP_CLOSE and opcode != _OP_PONG:
                self.hub.garbled += 1
            pos = end
        if pos < size:
            self._rest = data[pos:]

    def _write(self, frame: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    def send(self, data: bytes) -> None:
        self._write(client_frame(data))

    async def close(self) -> None:
        self._write(client_frame(_CLOSE_NORMAL, _OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_TIMEOUT_S)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()


class WebsocketsClient(Client):
    """The same client on the ``websockets`` asyncio API (``--client websockets``), for comparison."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._websocket: ClientConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, uri: str) -> None:
        """Connect and start reading."""
        self._websocket = await connect(
            uri, compression=None, ping_interval=None, proxy=None, max_size=None, open_timeout=30
        )
        self._spawn(self._read(self._websocket))

    async def _read(self, websocket: ClientConnection) -> None:
        recv, clock, on_text = websocket.recv, time.perf_counter_ns, self.on_text
        try:
            while True:
                on_text(cast(bytes, await recv(decode=False)), clock())
        except ConnectionClosed as error:
            self._gone(f"connection closed: {error}")
        finally:
            self._gone("reader stopped")

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, data: bytes) -> None:
        if self._websocket is not None:
            self._spawn(self._websocket.send(data, text=True))

    async def close(self) -> None:
        if self._websocket is not None:
            with contextlib.suppress(TimeoutError, WebSocketException, OSError):
                await asyncio.wait_for(self._websocket.close(), CLOSE_TIMEOUT_S)


async def open_client(kind: str, hub: Hub, port: int) -> Client:
    """Connect one client of implementation ``kind`` (``raw`` or ``websockets``)."""
    if kind == "raw":
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: RawClient(hub, HOST, port), HOST, port)
        client = cast(RawClient, protocol)
        await client.opened
        return client
    ws_client = WebsocketsClient(hub)
    await ws_client.open(f"ws://{HOST}:{port}/")
    return ws_client


@dataclass
class SubscriberSet:
    """S subscribers in one room, and the publisher (not a member)."""

    room: str
    subscribers: list[Client]
    publisher: Client


@contextlib.asynccontextmanager
async def subscriber_set(
    kind: str, hub: Hub, port: int, count: int, room: str
) -> AsyncIterator[SubscriberSet]:
    """Connect ``count`` subscribers that joined ``room`` and a publisher; close them all after."""
    clients: list[Client] = []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def subscriber() -> None:
        async with limit:
            client = await open_client(kind, hub, port)
            clients.append(client)
            answer = await asyncio.wait_for(
                client.command("mesh/join-room", {"roomName": room}), COMMAND_TIMEOUT_S
            )
            if not isinstance(answer, dict) or answer.get("success") is not True:
                raise RuntimeError(f"join-room answered {str(answer)[:200]}")

    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(subscriber() for _ in range(count)), return_exceptions=True), CONNECT_TIMEOUT_S
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise RuntimeError(f"{len(errors)} of {count} subscribers failed, e.g. {errors[0]!r}")
        publisher = await open_client(kind, hub, port)
        clients.append(publisher)
        hub.clients = clients[:-1]
        yield SubscriberSet(room, clients[:-1], publisher)
    finally:
        hub.clients = []
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


# -- the server tree ------------------------------------------------------------------------------


def role_of(pid: int, root: int) -> str:
    """Which part of the server ``pid`` is (see :data:`ROLES`), from its command line.

    Ray sets a worker's process title to ``ray::<ActorClass>`` once it hosts an actor.
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
    """Context switches so far by pid (all threads), with ``--threads``."""


def snapshot(root: int, threads: bool = False) -> Snapshot:
    """Read the server tree's CPU counters now (``threads``: per thread too, for ``--threads``)."""
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
    """Seconds by role, then by thread name (only with ``--threads``)."""
    switches: dict[str, int]
    """Context switches by role (only with ``--threads``)."""
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
    by_role: Counter[str] = Counter()
    by_thread: dict[str, Counter[str]] = {}
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
            names = by_thread.setdefault(role, Counter())
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


async def measure_idle(server: ServerUnderTest, seconds: float, threads: bool) -> Idle:
    """The server tree's CPU at rest: subscribers connected, nothing published."""
    if seconds <= 0:
        return Idle()
    root = server.process.pid
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


# -- profiling (optional) -------------------------------------------------------------------------


async def start_profiles(
    directory: Path, label: str, role_pids: dict[str, list[int]], seconds: float
) -> list[tuple[str, int, Path, asyncio.subprocess.Process]]:
    """Start ``py-spy record`` (raw collapsed stacks) on the mesh processes for ``seconds``."""
    started = []
    for role in ("serve", "gateway", "shard"):
        for pid in role_pids.get(role, []):
            output = directory / f"{label}-{role}-{pid}.txt"
            process = await asyncio.create_subprocess_exec(
                "py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(output),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            started.append((role, pid, output, process))
    return started


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions of a py-spy raw file: by own samples (leaf) and by samples under them (total)."""
    leaf: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            samples += count
            frames = [_frame_name(frame) for frame in stack.split(";")[1:]]  # [0] is the thread
            if frames:
                leaf[frames[-1]] += count
            for name in set(frames):
                total[name] += count
    share = 100 / samples if samples else 0.0
    return {
        "samples": samples,
        "leaf": [(name, round(n * share, 1)) for name, n in leaf.most_common(top)],
        "total": [(name, round(n * share, 1)) for name, n in total.most_common(top)],
    }


def _frame_name(frame: str) -> str:
    """``function (path/file.py:123)`` -> ``function (file.py)``: aggregate over line numbers."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name


# -- one run --------------------------------------------------------------------------------------


@dataclass
class PublishStats:
    """What the publisher did in one run."""

    sent: int = 0
    window: int = 0
    """Publishes sent inside the window."""
    errors: int = 0
    """Answers other than ``true`` (error payloads), or no answer."""
    rtts: array[int] = field(default_factory=lambda: array("q"))
    """Publish round trips (ns) of the publishes sent inside the window."""
    error: str | None = None


async def publish(
    client: Client,
    hub: Hub,
    room: str,
    mode: str,
    pace: float,
    stop: asyncio.Event,
    stats: PublishStats,
) -> None:
    """Publish until ``stop``.

    ``flat``: closed loop with ``pace`` publishes awaiting their answer at once (1: the next is sent
    after the previous answer). ``rate``: open loop, ``pace`` publishes per second.
    """
    loop = asyncio.get_running_loop()
    clock = time.perf_counter_ns
    run = hub.run
    waiting: set[asyncio.Future[Any]] = set()
    window = asyncio.Semaphore(int(pace) if mode == "flat" else 1)

    def answered(future: asyncio.Future[Any], sent_at: int, in_window: bool) -> None:
        waiting.discard(future)
        if mode == "flat":
            window.release()
        if future.cancelled() or future.exception() is not None or future.result() is not True:
            stats.errors += 1
        elif in_window:
            stats.rtts.append(clock() - sent_at)

    seq = 0
    next_at = loop.time()
    try:
        while not stop.is_set():
            if mode == "rate":
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if stop.is_set():
                        break
                next_at += 1.0 / pace
            else:
                await asyncio.wait_for(window.acquire(), COMMAND_TIMEOUT_S)
            seq += 1
            sent_at = clock()
            in_window = hub.measuring
            future = client.command(
                "publish", {"roomName": room, "payload": {"r": run, "s": seq, "t": sent_at}}
            )
            stats.sent += 1
            stats.window += in_window
            waiting.add(future)
            future.add_done_callback(lambda f, t=sent_at, w=in_window: answered(f, t, w))
        if waiting:
            await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), COMMAND_TIMEOUT_S)
    except (TimeoutError, ConnectionError) as error:
        stats.error = f"publisher: {error!r}"


async def run_scenario(
    args: argparse.Namespace,
    server: ServerUnderTest,
    runtime: str,
    hub: Hub,
    subs: SubscriberSet,
    mode: str,
    idle: Idle,
) -> dict[str, Any]:
    """Publish in ``mode``: warm up, measure the window, stop, drain; returns the result record."""
    count = len(subs.subscribers)
    root = server.process.pid
    hub.start_run()
    stats = PublishStats()
    stop = asyncio.Event()
    pace = args.inflight if mode == "flat" else args.rate
    publisher = asyncio.create_task(publish(subs.publisher, hub, subs.room, mode, pace, stop, stats))
    await asyncio.sleep(args.warmup)

    before, own0, wall0 = snapshot(root, args.threads), own_cpu_seconds(), time.perf_counter()
    hub.measuring = True
    profiles = []
    if args.profile is not None:
        label = f"{runtime}-s{count}-{mode}"
        role_pids: dict[str, list[int]] = {}
        for pid in before.processes:
            role_pids.setdefault(role_of(pid, root), []).append(pid)
        profiles = await start_profiles(args.profile, label, role_pids, args.duration)
    await asyncio.sleep(args.duration)
    hub.measuring = False
    after, own1, wall1 = snapshot(root, args.threads), own_cpu_seconds(), time.perf_counter()
    backlog = stats.sent * count - hub.received

    stop.set()
    await publisher
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    expected = (stats.sent - stats.errors) * count
    # Polling, not an event: the per-delivery hot path stays free of a "done yet?" check.
    while hub.received < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    profile: dict[str, Any] = {}
    for role, pid, output, process in profiles:
        await process.wait()
        profile[f"{role}-{pid}"] = summarize_profile(output)

    used = tree_cpu(root, before, after)
    elapsed = wall1 - wall0
    deliveries = hub.window
    latencies = sorted(hub.latencies)
    rtts = sorted(stats.rtts)
    generator_share = (own1 - own0) / elapsed
    server_share = used.total / elapsed
    idle_share, idle_by_role = idle.share, idle.by_role
    if generator_share >= SATURATED:
        limit = "generator"
    elif server_share >= SATURATED:
        limit = "server"
    else:
        limit = "rate" if mode == "rate" else "round-trip"
    errors = [stats.error] if stats.error else []
    dropped = sum(client.closed.done() for client in [*subs.subscribers, subs.publisher])
    if dropped:
        errors.append(f"{dropped} client(s) lost their connection")
    if args.server_cpu is not None and used.cpus != [args.server_cpu]:
        errors.append(f"server processes may run on cpus {used.cpus}, not only {args.server_cpu}")

    def per_delivery(seconds: float) -> float | None:
        return round(seconds / deliveries * 1e6, 2) if deliveries else None

    return {
        "runtime": runtime,
        "gateways": args.gateways if runtime == "ray" else 1,
        "client": args.client,
        "serve_args": args.serve_arg,
        "server_env": args.server_env,
        "subscribers": count,
        "mode": mode,
        "rate_target": args.rate if mode == "rate" else None,
        "inflight": args.inflight if mode == "flat" else None,
        "warmup_s": args.warmup,
        "duration_s": round(elapsed, 3),
        "published": stats.window,
        "published_per_s": round(stats.window / elapsed, 1),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / elapsed, 1),
        "p50_us": round(percentile(latencies, 50) / 1000, 1),
        "p99_us": round(percentile(latencies, 99) / 1000, 1),
        "max_us": round(latencies[-1] / 1000, 1) if latencies else 0.0,
        "publish_rtt_p50_us": round(percentile(rtts, 50) / 1000, 1),
        "publish_rtt_p99_us": round(percentile(rtts, 99) / 1000, 1),
        "server_cpu_pct": round(server_share * 100, 1),
        "server_cpu_us_per_delivery": per_delivery(used.total),
        "server_sys_us_per_delivery": per_delivery(used.system),
        "idle_cpu_pct": round(idle_share * 100, 1),
        "server_net_cpu_us_per_delivery": per_delivery(max(0.0, used.total - idle_share * elapsed)),
        "cpu_us_per_delivery_by_role": {role: per_delivery(value) for role, value in used.by_role.items()},
        "cpu_pct_by_role": {role: round(value / elapsed * 100, 1) for role, value in used.by_role.items()},
        "idle_cpu_pct_by_role": {role: round(value * 100, 1) for role, value in idle_by_role.items()},
        "server_pids": used.pids,
        "server_cpus": used.cpus,
        "generator_cpu_pct": round(generator_share * 100, 1),
        "generator_cpu_us_per_delivery": per_delivery(own1 - own0),
        "generator_saturated": generator_share >= SATURATED,
        "limit": limit,
        "backlog_at_end": backlog,
        "expected": expected,
        "received": hub.received,
        "lost": expected - hub.received,
        "disorder": hub.disorder,
        "stale": hub.stale,
        "garbled": hub.garbled,
        "publish_errors": stats.errors,
        "errors": errors[:10],
        **({"threads": _thread_table(used, idle, deliveries, elapsed)} if args.threads else {}),
        **(
            {
                "context_switches_per_publish": {
                    role: round(n / stats.window, 1) if stats.window else None
                    for role, n in used.switches.items()
                }
            }
            if args.threads
            else {}
        ),
        "profiled": bool(profile),
        **({"profile": profile} if profile else {}),
    }


def _thread_table(used: TreeCpu, idle: Idle, deliveries: int, elapsed: float) -> list[dict[str, Any]]:
    """Per (role, thread name): us per delivery in the window, % of a core in it and at rest."""
    rows = []
    for role, names in used.by_thread.items():
        for name, seconds in names.items():
            at_rest = idle.by_thread.get(role, {}).get(name, 0.0)
            if seconds > 0 or at_rest > 0:
                rows.append(
                    {
                        "role": role,
                        "thread": name,
                        "us_per_delivery": round(seconds / deliveries * 1e6, 2) if deliveries else None,
                        "pct": round(seconds / elapsed * 100, 1),
                        "idle_pct": round(at_rest * 100, 1),
                    }
                )
    return sorted(rows, key=lambda row: -row["pct"])


def failed(result: dict[str, Any]) -> bool:
    """True if the run lost, reordered or garbled anything, a publish failed or a client failed."""
    return bool(
        result["lost"]
        or result["disorder"]
        or result["garbled"]
        or result["publish_errors"]
        or result["errors"]
        or not result["deliveries"]
    )


# -- report ---------------------------------------------------------------------------------------


def mode_label(result: dict[str, Any]) -> str:
    """``flat`` (``flat x4`` with 4 publishes in flight) or ``rate 50``."""
    if result["mode"] == "rate":
        return f"rate {result['rate_target']:g}"
    return "flat" if result["inflight"] == 1 else f"flat x{result['inflight']}"


def _same_load(result: dict[str, Any]) -> tuple[Any, ...]:
    """What must match for two runs to be compared (everything but the runtime)."""
    return (result["subscribers"], mode_label(result), result["client"])


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Main table; ``x inl`` is CPU per delivery relative to inline at the same S, mode and client."""
    inline = {_same_load(r): r for r in results if r["runtime"] == "inline"}
    header = (
        f"{'runtime':<7} {'S':>5} {'mode':<9} {'pub/s':>7} {'deliv/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv us/d':>8} {'(sys)':>6} {'x inl':>5} {'net us/d':>8} {'x inl':>5} {'srv%':>5} {'idle%':>5} "
        f"{'gen%':>5} {'gen us/d':>8} {'lost':>6}  limit"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ref = inline.get(_same_load(r))
        ratio = net_ratio = "-"
        if ref is not None and ref["server_cpu_us_per_delivery"] and r["server_cpu_us_per_delivery"]:
            ratio = f"{r['server_cpu_us_per_delivery'] / ref['server_cpu_us_per_delivery']:.2f}"
        if ref is not None and ref["server_net_cpu_us_per_delivery"] and r["server_net_cpu_us_per_delivery"]:
            net_ratio = f"{r['server_net_cpu_us_per_delivery'] / ref['server_net_cpu_us_per_delivery']:.2f}"
        mode = mode_label(r)
        notes = [r["limit"]]
        if failed(r):
            notes.append(f"FAILED disorder={r['disorder']} errors={r['errors'] or r['publish_errors']}")
        lines.append(
            f"{r['runtime']:<7} {r['subscribers']:>5} {mode:<9} {r['published_per_s']:>7.0f} "
            f"{r['deliveries_per_s']:>9.0f} {r['p50_us'] / 1000:>7.2f} {r['p99_us'] / 1000:>7.2f} "
            f"{fmt_num(r['server_cpu_us_per_delivery']):>8} {fmt_num(r['server_sys_us_per_delivery']):>6} "
            f"{ratio:>5} {fmt_num(r['server_net_cpu_us_per_delivery']):>8} {net_ratio:>5} "
            f"{r['server_cpu_pct']:>5.0f} {r['idle_cpu_pct']:>5.1f} {r['generator_cpu_pct']:>5.0f} "
            f"{fmt_num(r['generator_cpu_us_per_delivery']):>8} {r['lost']:>6}  {', '.join(notes)}"
        )
    return "\n".join(lines)


def format_roles(results: Sequence[dict[str, Any]]) -> str:
    """Server CPU per delivery split by process role (us), then the idle CPU share by role (%)."""
    header = (
        f"{'runtime':<7} {'S':>5} {'mode':<9} "
        + " ".join(f"{role:>10}" for role in ROLES)
        + "   idle % of a core: "
        + " ".join(f"{role:>10}" for role in ROLES)
    )
    lines = [header, "-" * len(header)]
    for r in results:
        mode = mode_label(r)
        by_role = r["cpu_us_per_delivery_by_role"]
        idle = r["idle_cpu_pct_by_role"]
        lines.append(
            f"{r['runtime']:<7} {r['subscribers']:>5} {mode:<9} "
            + " ".join(f"{fmt_num(by_role[role]):>10}" for role in ROLES)
            + "                     "
            + " ".join(f"{idle[role]:>10.1f}" for role in ROLES)
        )
    return "\n".join(lines)


def format_threads(rows: Sequence[dict[str, Any]], top: int = 15) -> str:
    """The threads that used the most CPU in the window (``--threads``)."""
    header = f"{'role':<11} {'thread':<18} {'us/deliv':>8} {'% core':>7} {'idle %':>7}"
    lines = [header, "-" * len(header)]
    for row in rows[:top]:
        lines.append(
            f"{row['role']:<11} {row['thread']:<18} {fmt_num(row['us_per_delivery']):>8} "
            f"{row['pct']:>7.1f} {row['idle_pct']:>7.1f}"
        )
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------


def server_command(runtime: str, gateways: int, extra: Sequence[str] = ()) -> list[str]:
    """How the server under test is started (``--port 0``: the ready line says which port)."""
    command = [sys.executable, "-m", "mesh_actors", "serve", APP, "--runtime", runtime, "--port", "0"]
    if runtime == "ray":
        command += ["--gateways", str(gateways)]
    return [*command, *extra]


async def run_subscriber_set(
    args: argparse.Namespace, server: ServerUnderTest, runtime: str, hub: Hub, count: int
) -> list[dict[str, Any]]:
    """Connect S subscribers, measure the server at rest, then run every mode on them."""
    results = []
    room = f"bench-{runtime}-{count}-{os.urandom(3).hex()}"
    started = time.perf_counter()
    async with subscriber_set(args.client, hub, server.port, count, room) as subs:
        log(f"[{runtime}] S={count}: joined in {time.perf_counter() - started:.1f} s")
        await asyncio.sleep(SETTLE_S)
        idle = await measure_idle(server, args.idle, args.threads)
        for mode in args.mode:
            what = f"closed loop x{args.inflight}" if mode == "flat" else f"{args.rate:g}/s"
            log(f"[{runtime}] S={count} {what}: warm-up {args.warmup:g} s, measuring {args.duration:g} s")
            result = await run_scenario(args, server, runtime, hub, subs, mode, idle)
            print(json.dumps(result), flush=True)
            results.append(result)
            if failed(result):
                log(
                    f"[{runtime}] S={count} {mode} FAILED: lost={result['lost']} "
                    f"disorder={result['disorder']} errors={result['errors']}"
                )
            if result["generator_saturated"]:
                log(
                    f"[{runtime}] S={count} {mode}: generator saturated ({result['generator_cpu_pct']}%); "
                    "compare server us per delivery"
                )
    await asyncio.sleep(SETTLE_S)  # let the server clean the set up before the next measurement
    return results


async def run(args: argparse.Namespace) -> int:
    """Every runtime, subscriber count and mode in turn; returns the exit status."""
    results: list[dict[str, Any]] = []
    status = 0
    hub = Hub()
    for item in args.server_env:  # the server inherits this process's environment
        name, _, value = item.partition("=")
        os.environ[name] = value
    for runtime in args.runtime:
        command = server_command(runtime, args.gateways, args.serve_arg)
        try:
            async with running_server(runtime, command, args.server_cpu, STARTUP_TIMEOUT_S[runtime]) as srv:
                log(f"[{runtime}] {srv.banner}")
                for count in args.subscribers:
                    results += await run_subscriber_set(args, srv, runtime, hub, count)
        except (ServerStartError, RuntimeError, OSError) as error:
            log(f"[{runtime}] {error}")
            status = 1
    if any(failed(result) for result in results):
        status = 1
    if results:
        log("")
        log(format_table(results))
        log("\nserver CPU per delivery by process role (us), and at rest:")
        log(format_roles(results))
        for result in results:
            if result.get("threads"):
                log(f"\nby thread, {result['runtime']} S={result['subscribers']} {mode_label(result)}:")
                log(format_threads(result["threads"]))
                switches = result["context_switches_per_publish"]
                log("context switches per publish: " + ", ".join(f"{k} {v}" for k, v in switches.items()))
        log(
            f"\nserver tree on cpu {args.server_cpu}, generator on cpu {args.client_cpu} "
            f"({args.client} client, websockets {version('websockets')}, {loop_name()}); "
            "srv = server process tree, net = minus its idle CPU, x inl = ratio to inline"
        )
    return status


def _counts(text: str) -> list[int]:
    """Parse ``--subscribers 100,1000`` within the bounds."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(not 1 <= v <= MAX_SUBSCRIBERS for v in values):
        raise argparse.ArgumentTypeError(f"subscriber counts must be between 1 and {MAX_SUBSCRIBERS}")
    return values


def _choices(allowed: Sequence[str]) -> Any:
    """Parser of a comma list whose items are all in ``allowed``."""

    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        if not values or any(v not in allowed for v in values):
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}")
        return values

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line, with ``--quick`` overriding the scenario list and timings."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runtime", type=_choices(RUNTIMES), help="comma list [default: inline,ray]")
    parser.add_argument("--subscribers", type=_counts, help="comma list of S [default: 100,1000]")
    parser.add_argument("--mode", type=_choices(MODES), help="comma list [default: flat,rate]")
    parser.add_argument("--rate", type=float, default=50.0, help="publishes per second in rate mode [50]")
    parser.add_argument(
        "--inflight", type=int, default=1, help="flat mode: publishes awaiting their answer at once [1]"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds [default: 10]")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first [default: 2]")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of at-rest CPU measurement [3]")
    parser.add_argument("--gateways", type=int, default=2, help="gateway actors for ray [default: 2]")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'mesh-actors serve', e.g. --serve-arg=--room-shards=1 (repeatable)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for the server, e.g. a RAY_* setting (repeatable)",
    )
    parser.add_argument("--client", choices=("raw", "websockets"), default="raw", help="client [raw]")
    parser.add_argument("--threads", action="store_true", help="also split server CPU by thread name")
    parser.add_argument("--profile", type=Path, help="py-spy record the mesh processes into this folder")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: S=20, 1 s windows (inline unless --runtime)"
    )
    add_pinning_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.runtime = args.runtime or ["inline"]
        args.subscribers = args.subscribers or [20]
        args.duration, args.warmup, args.idle = 1.0, 0.3, 0.0
    args.runtime = args.runtime or list(RUNTIMES)
    args.subscribers = args.subscribers or [100, 1000]
    args.mode = args.mode or list(MODES)
    if not 0 < args.duration <= MAX_DURATION_S or not 0 <= args.warmup <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}] and --warmup in [0, {MAX_DURATION_S:g}]")
    if not 0 <= args.idle <= MAX_DURATION_S:
        parser.error(f"--idle must be in [0, {MAX_DURATION_S:g}]")
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if not 1 <= args.inflight <= 64:
        parser.error("--inflight must be between 1 and 64")
    if not 1 <= args.gateways <= 8:
        parser.error("--gateways must be between 1 and 8")
    if args.profile is not None:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
    for item in args.server_env:
        name, sep, _ = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-env needs NAME=VALUE, not {item!r}")
    check_pinning(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Pin this process, then run on uvloop when it is installed."""
    args = parse_args(argv)
    return run_pinned(lambda: run(args), args.client_cpu)


if __name__ == "__main__":
    sys.exit(main())
