"""The room fan-out scenario: S subscribers, one publisher, flat out or at a fixed rate.

Per subscriber set: S clients connect and send ``rt/join-room {roomName}`` (each awaits its
answer), and one publisher connects (not a member); the server tree's CPU at rest is measured. Per
mode, the publisher sends ``publish {roomName, payload: {r, s, t}}`` (run id, sequence number, send
time in ns), ``flat`` (closed loop, ``inflight`` unanswered at once) or ``rate`` (open loop, ``rate``
per second); after a warm-up a window is measured; then the publisher stops and the run waits until
every subscriber has every message.

Reported: ``deliveries_per_s`` (``room-message`` frames received in the window), ``p50_us`` /
``p99_us`` (receive time minus the payload's send time; includes the generator's own queueing: at
S=1000 one message is read from 1000 sockets one after the other), ``lost`` (published x S minus
received, after the drain), ``disorder`` (a sequence number not above the previous one on a
connection), ``backlog_at_end`` (deliveries in flight when the window closed), and server CPU per
delivery, total and by process role (see :mod:`mesh_actors.bench.treecpu`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .options import BenchOptions
from .profiling import collect_profiles, start_profiles
from .report import Reporter, percentile_us
from .servers import ServerUnderTest
from .treecpu import Idle, TreeCpu, measure_idle, role_of, snapshot
from .window import measure_window
from .wsclient import Client, Hub, open_client

CONNECT_TIMEOUT_S = 120.0
"""For connecting and joining a whole subscriber set."""
CONNECT_CONCURRENCY = 50
"""Handshakes in flight at once (the joins' answers list every member: O(S^2) bytes in total)."""
DRAIN_TIMEOUT_S = 20.0
"""After the window, how long the deliveries still in flight may take before they count as lost."""
COMMAND_TIMEOUT_S = 30.0
"""A publish or join without an answer for this long fails the run."""


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
                # The rt/ spelling: mesh-actors and the baselines take both dialects, the Node
                # reference (@prsm/realtime) only this one.
                client.command("rt/join-room", {"roomName": room}),
                COMMAND_TIMEOUT_S,
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
    client: Client, hub: Hub, room: str, mode: str, pace: float, stop: asyncio.Event, stats: PublishStats
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
                    await asyncio.sleep(delay)  # pacing the open loop, not synchronization
                    if stop.is_set():
                        break
                next_at += 1.0 / pace
            else:
                await asyncio.wait_for(window.acquire(), COMMAND_TIMEOUT_S)
            seq += 1
            sent_at = clock()
            in_window = hub.measuring
            body = {"roomName": room, "payload": {"r": run, "s": seq, "t": sent_at}}
            future = client.command("publish", body)
            stats.sent += 1
            stats.window += in_window
            waiting.add(future)
            future.add_done_callback(functools.partial(answered, sent_at=sent_at, in_window=in_window))
        if waiting:
            await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), COMMAND_TIMEOUT_S)
    except (TimeoutError, ConnectionError) as error:
        stats.error = f"publisher: {error!r}"


async def run_fanout(
    options: BenchOptions, server: ServerUnderTest, hub: Hub, subs: SubscriberSet, mode: str, idle: Idle
) -> dict[str, Any]:
    """Publish in ``mode``: warm up, measure the window, stop, drain; returns the result record."""
    count = len(subs.subscribers)
    hub.start_run()
    stats = PublishStats()
    stop = asyncio.Event()
    pace = options.inflight if mode == "flat" else options.rate
    publisher = asyncio.create_task(publish(subs.publisher, hub, subs.room, mode, pace, stop, stats))
    await asyncio.sleep(options.warmup)

    profiles = []
    if options.profile is not None:
        role_pids: dict[str, list[int]] = {}
        for pid in snapshot(server.pid).processes:
            role_pids.setdefault(role_of(pid, server.pid), []).append(pid)
        label = f"{server.target}-s{count}-{mode}"
        profiles = await start_profiles(options.profile, label, role_pids, options.duration)

    def measuring(on: bool) -> None:
        hub.measuring = on

    cpu = await measure_window(server.pid, options.duration, measuring, options.threads)
    backlog = stats.sent * count - hub.received
    stop.set()
    await publisher
    expected = (stats.sent - stats.errors) * count
    hub.expect(expected)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hub.drained.wait(), DRAIN_TIMEOUT_S)
    profile = await collect_profiles(profiles)

    used = cpu.server
    deliveries = hub.window
    errors = [stats.error] if stats.error else []
    dropped = sum(client.closed.done() for client in [*subs.subscribers, subs.publisher])
    if dropped:
        errors.append(f"{dropped} client(s) lost their connection")
    if options.server_cpu is not None and used.cpus != [options.server_cpu]:
        errors.append(f"server processes may run on cpus {used.cpus}, not only {options.server_cpu}")
    rtts, latencies = sorted(stats.rtts), sorted(hub.latencies)
    record: dict[str, Any] = {
        "scenario": "fanout",
        "target": server.target,
        "client": options.client,
        "serve_args": options.serve_args,
        "server_env": options.server_env,
        "gateways": options.gateways if server.target == "mesh-ray" else None,
        "shard_hosts": options.shard_hosts if server.target == "mesh-ray" and not options.colocate else None,
        "colocate": options.colocate if server.target == "mesh-ray" else None,
        "subscribers": count,
        "mode": mode,
        "rate_target": options.rate if mode == "rate" else None,
        "inflight": options.inflight if mode == "flat" else None,
        "warmup_s": options.warmup,
        "duration_s": round(cpu.elapsed, 3),
        "published": stats.window,
        "published_per_s": round(stats.window / cpu.elapsed, 1),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / cpu.elapsed, 1),
        "p50_us": percentile_us(latencies, 50),
        "p99_us": percentile_us(latencies, 99),
        "max_us": round(latencies[-1] / 1000, 1) if latencies else 0.0,
        "publish_rtt_p50_us": percentile_us(rtts, 50),
        "publish_rtt_p99_us": percentile_us(rtts, 99),
        **cpu.fields("delivery", deliveries, idle),
        "limit": cpu.limit("rate" if mode == "rate" else "round-trip"),
        "backlog_at_end": backlog,
        "total_published": stats.sent,
        "expected": expected,
        "received": hub.received,
        "lost": expected - hub.received,
        "disorder": hub.disorder,
        "stale": hub.stale,
        "garbled": hub.garbled,
        "publish_errors": stats.errors,
        "errors": errors[:10],
    }
    if options.threads:
        record["threads"] = thread_table(used, idle, deliveries, cpu.elapsed)
        record["context_switches_per_publish"] = {
            role: round(n / stats.window, 1) if stats.window else None for role, n in used.switches.items()
        }
    if profile:
        record["profile"] = profile
    return record


def thread_table(used: TreeCpu, idle: Idle, deliveries: int, elapsed: float) -> list[dict[str, Any]]:
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


async def run_subscriber_sets(
    options: BenchOptions, server: ServerUnderTest, reporter: Reporter
) -> list[dict[str, Any]]:
    """For each S: connect S subscribers, measure the server at rest, then run every mode on them.

    Each result goes to ``reporter`` (a JSON line on stdout) as soon as it is known.
    """
    results = []
    hub = Hub()
    for count in options.subscribers:
        room = f"bench-{count}-{os.urandom(3).hex()}"
        started = time.perf_counter()
        async with subscriber_set(options.client, hub, server.port, count, room) as subs:
            reporter.progress(f"[{server.target}] S={count}: joined in {time.perf_counter() - started:.1f} s")
            await asyncio.sleep(options.settle)  # let the joins' Redis writes finish before measuring
            idle = await measure_idle(server.pid, options.idle, options.threads)
            for mode in options.modes:
                what = f"closed loop x{options.inflight}" if mode == "flat" else f"{options.rate:g}/s"
                reporter.progress(
                    f"[{server.target}] S={count} {what}: warm-up {options.warmup:g} s, "
                    f"measuring {options.duration:g} s"
                )
                results.append(reporter.result(await run_fanout(options, server, hub, subs, mode, idle)))
        await asyncio.sleep(options.settle)  # let the server clean the set up before the next one
    return results
