"""Unit tests of the client's pure parts: backoff, options, inbound decoding, the request table,
the offline queue, the emitter, the watchdog and the exceptions."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from mesh_actors.client import (
    Backoff,
    ClientOptions,
    ClientStatus,
    Dialect,
    MeshClient,
    MeshCommandError,
    MeshConnectionError,
    MeshTimeoutError,
)
from mesh_actors.client.emitter import EventEmitter
from mesh_actors.client.inbound import Ignored, Push, Response, decode_inbound
from mesh_actors.client.offline import OfflineQueue
from mesh_actors.client.requests import PendingRequests
from mesh_actors.client.watchdog import Watchdog
from mesh_actors.protocol import CodeError

# -- backoff -------------------------------------------------------------------------------------


def test_backoff_ceiling_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, multiplier=2.0, jitter=1.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(100_000) == 30.0  # no OverflowError for huge attempt numbers


def test_backoff_delay_stays_within_the_jitter_band() -> None:
    rng = random.Random(1234)
    backoff = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.25)
    for attempt in range(1, 8):
        ceiling = backoff.ceiling(attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(500)]
        assert all(ceiling * 0.75 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.2  # actually randomized across the band


def test_full_jitter_spreads_over_the_whole_range_and_zero_jitter_is_exact() -> None:
    rng = random.Random(7)
    full = Backoff(initial=1.0, maximum=1.0, multiplier=2.0, jitter=1.0)
    delays = [full.delay(1, rng) for _ in range(2000)]
    assert min(delays) < 0.05 and max(delays) > 0.95
    exact = Backoff(initial=0.5, maximum=30.0, multiplier=3.0, jitter=0.0)
    assert [exact.delay(n, rng) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]


@pytest.mark.parametrize(
    "fields",
    [
        {"initial": -1.0, "maximum": 1.0, "multiplier": 2.0, "jitter": 0.5},
        {"initial": 2.0, "maximum": 1.0, "multiplier": 2.0, "jitter": 0.5},
        {"initial": 1.0, "maximum": 2.0, "multiplier": 0.5, "jitter": 0.5},
        {"initial": 1.0, "maximum": 2.0, "multiplier": 2.0, "jitter": 1.5},
    ],
)
def test_backoff_rejects_nonsense(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**fields)


def test_backoff_attempts_are_one_based() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=1.0, maximum=1.0, multiplier=1.0, jitter=0.0).ceiling(0)


# -- options -------------------------------------------------------------------------------------


def test_option_defaults_and_keyword_overrides() -> None:
    client = MeshClient("ws://127.0.0.1:1", command_timeout=5, dialect="rt")
    assert client.options.command_timeout == 5
    assert client.dialect is Dialect.RT
    assert client.status is ClientStatus.OFFLINE
    assert client.connection_id is None
    base = ClientOptions(max_missed_pings=3)
    assert MeshClient("ws://h", base, ping_timeout=2).options.watchdog_period == 8
    defaults = ClientOptions()
    assert defaults.watchdog_period == 60.0
    assert defaults.max_reconnect_attempts is None and defaults.raise_errors is True
    assert ClientOptions(ping_timeout=None).watchdog_period is None
    assert ClientOptions(dialect="mesh/").dialect is Dialect.MESH


@pytest.mark.parametrize(
    "bad",
    [
        {"dialect": "nope"},
        {"command_timeout": 0},
        {"open_timeout": -1},
        {"ping_timeout": 0},
        {"max_missed_pings": -1},
        {"max_reconnect_attempts": -1},
        {"offline_queue_size": -1},
        {"offline_queue_expiry": 0},
        {"reconnect_jitter": 2},
        {"reconnect_multiplier": 0.5},
        {"reconnect_initial_delay": 5, "reconnect_max_delay": 1},
    ],
)
def test_invalid_options_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClientOptions(**bad)  # type: ignore[arg-type]


def test_unknown_option_and_bad_url_are_rejected() -> None:
    with pytest.raises(TypeError):
        MeshClient("ws://127.0.0.1:1", no_such_option=1)
    with pytest.raises(ValueError):
        MeshClient("http://127.0.0.1:1")


# -- inbound decoding ----------------------------------------------------------------------------


def test_decode_inbound_classifies_frames() -> None:
    assert decode_inbound('{"id":3,"command":"echo","payload":{"a":1}}') == Response(3, "echo", {"a": 1})
    assert decode_inbound(b'{"id":2,"command":"noret"}') == Response(2, "noret", None)
    assert decode_inbound('{"command":"hello","payload":"world"}') == Push("hello", "world")
    assert decode_inbound('{"command":"ping"}') == Push("ping", None)
    for junk in ("not json", "[1,2]", "null", "5", '{"payload":1}', '{"command":7}'):
        assert isinstance(decode_inbound(junk), Ignored), junk


# -- request table -------------------------------------------------------------------------------


async def test_ids_wrap_around_and_skip_ids_still_in_flight() -> None:
    table = PendingRequests(id_limit=5)  # ids 1..4
    first = [table.open("c")[0] for _ in range(3)]
    assert first == [1, 2, 3]
    table.close(2)
    assert table.open("c")[0] == 4
    assert table.open("c")[0] == 2  # wrapped, skipping 1 which is in flight
    assert len(table) == 4
    with pytest.raises(RuntimeError):
        table.open("c")


async def test_resolve_matches_ids_only_and_ignores_foreign_ids() -> None:
    table = PendingRequests()
    request_id, future = table.open("echo")
    assert not table.resolve(request_id + 1, "x")
    assert not table.resolve([request_id], "x")  # unhashable id from a confused peer
    assert not table.resolve(True, "x")
    assert table.resolve(request_id, "ok")
    assert future.result() == "ok"
    assert not table.resolve(request_id, "again")


async def test_fail_sent_spares_requests_not_yet_on_the_wire() -> None:
    table = PendingRequests()
    sent_id, sent = table.open("a")
    _, queued = table.open("b")
    table.mark_sent(sent_id)
    table.fail_sent(lambda command: MeshConnectionError(command))
    assert isinstance(sent.exception(), MeshConnectionError)
    assert not queued.done()
    table.fail_all(lambda command: MeshConnectionError(command))
    assert str(queued.exception()) == "b"


# -- offline queue -------------------------------------------------------------------------------


def _future() -> asyncio.Future[object]:
    return asyncio.get_running_loop().create_future()


async def test_offline_queue_is_fifo_and_bounded() -> None:
    queue = OfflineQueue(maxsize=2, expiry=10)
    queue.push(1, "a", b"1", _future())
    queue.push(2, "b", b"2", _future())
    with pytest.raises(MeshConnectionError, match="offline queue is full"):
        queue.push(3, "c", b"3", _future())
    first = queue.pop()
    assert first is not None and first.frame == b"1"
    queue.requeue(first)
    popped = [queue.pop(), queue.pop()]
    assert [e.request_id for e in popped if e] == [1, 2]
    assert queue.pop() is None


async def test_offline_queue_entries_expire_with_a_timeout() -> None:
    queue = OfflineQueue(maxsize=10, expiry=0.05)
    expiring = _future()
    queue.push(1, "slow", b"x", expiring)
    with pytest.raises(MeshTimeoutError, match="expired in the offline queue") as info:
        await asyncio.wait_for(expiring, 2)
    assert info.value.code == "ETIMEOUT"
    assert len(queue) == 0


async def test_offline_queue_discard_and_fail_all() -> None:
    queue = OfflineQueue(maxsize=10, expiry=10)
    kept, dropped = _future(), _future()
    queue.push(1, "a", b"1", dropped)
    queue.push(2, "b", b"2", kept)
    queue.discard(1)
    assert 1 not in queue and 2 in queue
    queue.fail_all(lambda command: MeshConnectionError(f"gone {command}"))
    assert str(kept.exception()) == "gone b"
    assert not dropped.done() and len(queue) == 0


async def test_zero_sized_offline_queue_refuses_everything() -> None:
    with pytest.raises(MeshConnectionError):
        OfflineQueue(maxsize=0, expiry=1).push(1, "a", b"", _future())


# -- emitter -------------------------------------------------------------------------------------


async def test_emitter_sync_async_unsubscribe_and_isolation(caplog: pytest.LogCaptureFixture) -> None:
    emitter = EventEmitter()
    seen: list[object] = []
    done = asyncio.Event()

    def broken(value: object) -> None:
        raise RuntimeError("callback bug")

    async def later(value: object) -> None:
        seen.append(("async", value))
        done.set()

    off = emitter.on("e", seen.append)
    emitter.on("e", broken)
    emitter.on("e", later)
    with caplog.at_level(logging.ERROR, logger="mesh_actors.client"):
        emitter.emit("e", 1)
    await asyncio.wait_for(done.wait(), 2)
    assert seen == [1, ("async", 1)]
    assert "callback bug" in caplog.text
    off()
    off()  # idempotent
    assert emitter.listener_count("e") == 2
    emitter.emit("nobody-listens", 1)


async def test_emitter_logs_async_callback_failures() -> None:
    emitter = EventEmitter()
    logged = asyncio.Event()
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            logged.set()

    async def broken() -> None:
        raise ValueError("async bug")

    handler = Capture(logging.ERROR)
    logger = logging.getLogger("mesh_actors.client")
    logger.addHandler(handler)
    try:
        emitter.on("e", broken)
        emitter.emit("e")
        await asyncio.wait_for(logged.wait(), 2)
    finally:
        logger.removeHandler(handler)
    assert records[0].exc_info is not None and "async bug" in str(records[0].exc_info[1])


# -- watchdog ------------------------------------------------------------------------------------


async def test_watchdog_fires_once_after_silence_and_feeding_postpones_it() -> None:
    loop = asyncio.get_running_loop()
    fired = asyncio.Event()
    watchdog = Watchdog(0.1, fired.set)
    start = loop.time()
    watchdog.start()
    await asyncio.wait_for(fired.wait(), 2)
    assert loop.time() - start >= 0.1 - 0.005
    assert not watchdog.running

    fired.clear()
    fed = asyncio.Event()
    watchdog.start()
    start = loop.time()

    def feed_then_mark() -> None:
        watchdog.feed()
        fed.set()

    loop.call_later(0.06, feed_then_mark)
    await asyncio.wait_for(fired.wait(), 2)
    assert fed.is_set()
    assert loop.time() - start >= 0.06 + 0.1 - 0.005
    watchdog.stop()


async def test_disabled_watchdog_never_arms() -> None:
    watchdog = Watchdog(None, lambda: None)
    watchdog.start()
    assert not watchdog.running


# -- errors --------------------------------------------------------------------------------------


def test_exceptions_carry_codes_and_builtin_bases() -> None:
    error = MeshCommandError("x", {"error": "boom", "code": "EBOOM", "name": "BoomError"})
    assert (error.message, error.code, error.name, error.command) == ("boom", "EBOOM", "BoomError", "x")
    assert isinstance(error, CodeError)
    timeout = MeshTimeoutError("late")
    assert isinstance(timeout, TimeoutError) and timeout.code == "ETIMEOUT" and timeout.name == "TimeoutError"
    refused = MeshConnectionError("no", status=401)
    assert isinstance(refused, ConnectionError) and refused.status == 401 and refused.code == "ECONNECTION"
    assert repr(timeout).startswith("MeshTimeoutError(")
