"""Client mechanics over a real socket, against the scripted wire peer (see ``wire_peer.py``):
handshake and dialects, correlation, timeouts, heartbeats, watchdog, reconnect with backoff,
the offline queue and closing. Behaviour against our server is in ``test_client_server.py``."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from mesh_actors.client import (
    ClientStatus,
    Dialect,
    MeshClient,
    MeshCommandError,
    MeshConnectionError,
    MeshTimeoutError,
)
from mesh_actors.protocol import MISSING

from .client_events import ClientFactory, expect, record
from .wire_peer import WirePeer

WAIT = 5.0
"""Upper bound of every wait on an event: generous, since a passing test never reaches it."""

FAST = {"reconnect_initial_delay": 0.01, "reconnect_max_delay": 0.05}
"""Reconnect quickly in tests that are not about the delays."""


# -- connecting ----------------------------------------------------------------------------------


async def test_connect_resolves_on_assign_id(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    seen: list[tuple[Any, ClientStatus]] = []
    client.on("connect", lambda connection_id: seen.append((connection_id, client.status)))
    assert client.status is ClientStatus.OFFLINE
    await asyncio.wait_for(client.connect(), WAIT)
    assert client.status is ClientStatus.ONLINE
    assert client.connection_id == "peer-1"
    assert client.dialect is Dialect.MESH  # the peer sends mesh/ first, then rt/
    assert seen == [("peer-1", ClientStatus.ONLINE)]
    await client.connect()  # already online: returns at once
    assert len(peer.connections) == 1


async def test_concurrent_connects_share_one_attempt(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await asyncio.wait_for(asyncio.gather(client.connect(), client.connect(), client.connect()), WAIT)
    assert len(peer.connections) == 1


@pytest.mark.parametrize(
    ("dialects", "option", "expected"),
    [
        (("rt/",), None, Dialect.RT),  # the realtime server only sends rt/
        (("mesh/",), None, Dialect.MESH),  # the Mesh server only sends mesh/
        (("rt/", "mesh/"), None, Dialect.RT),  # the first assign-id decides
        (("mesh/", "rt/"), "rt", Dialect.RT),  # a configured dialect ignores the other frame
    ],
)
async def test_dialect_is_detected_or_configured(
    make_client: ClientFactory, dialects: tuple[str, ...], option: str | None, expected: Dialect
) -> None:
    async with WirePeer(dialects=dialects) as peer:
        client = make_client(peer.url, dialect=option)
        await asyncio.wait_for(client.connect(), WAIT)
        assert client.dialect is expected
        result = await client.join_room("lobby")
        assert result == {"success": True, "present": [{"id": "peer-1", "metadata": None}]}
        (join,) = peer.latest.requests(expected.prefix + "join-room")
        assert join["payload"] == {"roomName": "lobby"}
        await client.close()


async def test_configured_dialect_never_sees_its_assign_id(make_client: ClientFactory) -> None:
    async with WirePeer(dialects=("mesh/",)) as peer:
        client = make_client(peer.url, dialect=Dialect.RT, open_timeout=0.3)
        with pytest.raises(MeshConnectionError, match="assign-id"):
            await asyncio.wait_for(client.connect(), WAIT)
        assert client.status is ClientStatus.OFFLINE
        await peer.until(lambda: all(c.ws.close_code is not None for c in peer.connections))


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_upgrade_carries_the_http_status(
    peer: WirePeer, make_client: ClientFactory, status: int
) -> None:
    peer.reject_status = status
    client = make_client(peer.url)
    with pytest.raises(MeshConnectionError) as info:
        await asyncio.wait_for(client.connect(), WAIT)
    assert info.value.status == status
    assert info.value.code == "ECONNECTION"
    assert isinstance(info.value, ConnectionError)
    assert client.status is ClientStatus.OFFLINE
    assert len(peer.attempts) == 1  # a failed first connect is not retried


async def test_refused_tcp_connection(make_client: ClientFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"ws://127.0.0.1:{port}")
    with pytest.raises(MeshConnectionError) as info:
        await asyncio.wait_for(client.connect(), WAIT)
    assert info.value.status is None


async def test_upgrade_sends_configured_headers(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, headers={"Authorization": "Bearer t0ken"})
    await asyncio.wait_for(client.connect(), WAIT)
    assert peer.latest.headers["Authorization"] == "Bearer t0ken"


async def test_commands_wait_for_assign_id(peer: WirePeer, make_client: ClientFactory) -> None:
    peer.assign = False
    client = make_client(peer.url)
    connecting = asyncio.create_task(client.connect())
    connection = await peer.next_connection(0)
    assert client.status is ClientStatus.CONNECTING
    echo = asyncio.create_task(client.command("echo", {"early": True}))
    with pytest.raises(TimeoutError):  # nothing is sent before the identity is known
        await peer.until(lambda: connection.frames, limit=0.2)
    await connection.push("mesh/assign-id", "late-id")
    await asyncio.wait_for(connecting, WAIT)
    assert client.connection_id == "late-id"
    assert await asyncio.wait_for(echo, WAIT) == {"early": True}


# -- commands ------------------------------------------------------------------------------------


async def test_command_frame_shape_and_round_trip(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    assert await client.command("echo", {"x": [1, "é"]}) == {"x": [1, "é"]}
    assert await client.command("echo") == {}  # None is sent as {} like the stock client
    assert await client.command("echo", 0) == 0
    first, second, third = peer.latest.requests("echo")
    assert set(first) == {"id", "command", "payload"}
    assert type(first["id"]) is int and first["id"] > 0
    assert second["payload"] == {} and third["payload"] == 0


async def test_response_without_payload_returns_none(peer: WirePeer, make_client: ClientFactory) -> None:
    peer.handlers["noret"] = lambda conn, payload: MISSING
    client = make_client(peer.url)
    await client.connect()
    assert await client.command("noret") is None


async def test_error_payloads_raise_or_return(peer: WirePeer, make_client: ClientFactory) -> None:
    error = {"error": "nope", "code": "EFAIL", "name": "FailError"}
    peer.handlers["fail"] = lambda conn, payload: error
    client = make_client(peer.url)
    await client.connect()
    with pytest.raises(MeshCommandError) as info:
        await client.command("fail")
    assert (info.value.code, info.value.name, str(info.value)) == ("EFAIL", "FailError", "nope")
    assert info.value.payload == error and info.value.command == "fail"
    assert await client.command("fail", raise_errors=False) == error
    with pytest.raises(MeshCommandError) as unknown:
        await client.command("unknown-command")
    assert unknown.value.payload == {
        "error": 'Command "unknown-command" not found',
        "code": "ENOTFOUND",
        "name": "CommandError",
    }

    lenient = make_client(peer.url, raise_errors=False)
    await lenient.connect()
    assert await lenient.command("fail") == error
    with pytest.raises(MeshCommandError):
        await lenient.command("fail", raise_errors=True)


async def test_responses_out_of_order_are_matched_by_id(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    first = asyncio.create_task(client.command("hold", {"gate": "a", "n": 1}))
    second = asyncio.create_task(client.command("hold", {"gate": "b", "n": 2}))
    await peer.until(lambda: len(peer.latest.requests("hold")) == 2)
    peer.gates.setdefault("b", asyncio.Event()).set()
    assert await asyncio.wait_for(second, WAIT) == {"gate": "b", "n": 2}
    assert not first.done()
    peer.gates.setdefault("a", asyncio.Event()).set()
    assert await asyncio.wait_for(first, WAIT) == {"gate": "a", "n": 1}


async def test_ids_are_unique_among_requests_in_flight(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    count = 300
    tasks = [asyncio.create_task(client.command("hold", {"gate": "all", "n": n})) for n in range(count)]
    await peer.until(lambda: len(peer.latest.requests("hold")) == count)
    ids = [frame["id"] for frame in peer.latest.requests("hold")]
    assert len(set(ids)) == count
    peer.gates.setdefault("all", asyncio.Event()).set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert [r["n"] for r in results] == list(range(count))


async def test_timeout_and_late_response(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    with pytest.raises(MeshTimeoutError, match="timed out") as info:
        await client.command("hold", {"gate": "late"}, timeout=0.1)
    assert info.value.code == "ETIMEOUT" and isinstance(info.value, TimeoutError)
    peer.gates.setdefault("late", asyncio.Event()).set()  # the late response arrives and is dropped
    assert await client.command("echo", "still fine") == "still fine"
    short = make_client(peer.url, command_timeout=0.1)
    await short.connect()
    with pytest.raises(MeshTimeoutError):
        await short.command("hold", {"gate": "never"})


async def test_unserializable_payload_is_not_sent(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    with pytest.raises(TypeError):
        await client.command("echo", object())
    assert await client.command("echo", 1) == 1
    assert len(peer.latest.requests()) == 1


async def test_command_before_connect_raises(make_client: ClientFactory) -> None:
    client = make_client("ws://127.0.0.1:9")
    with pytest.raises(MeshConnectionError, match="connect"):
        await client.command("echo")
    with pytest.raises(MeshConnectionError):
        await client.join_room("r")


# -- heartbeats and pushes -----------------------------------------------------------------------


async def test_ping_is_answered_with_pong(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    pinged = expect(client, "ping")
    await peer.latest.push("ping", {})
    await asyncio.wait_for(pinged, WAIT)
    pongs = await peer.until(lambda: [f for f in peer.latest.frames if f.get("command") == "pong"])
    assert pongs[0]["payload"] == {} and type(pongs[0]["id"]) is int


async def test_latency_request_is_echoed_and_latency_emitted(
    peer: WirePeer, make_client: ClientFactory
) -> None:
    client = make_client(peer.url)
    await client.connect()
    await peer.latest.push("latency:request", {"t": 5})
    replies = await peer.until(
        lambda: [f for f in peer.latest.frames if f.get("command") == "latency:response"]
    )
    assert replies[0]["payload"] == {"t": 5} and type(replies[0]["id"]) is int
    latency = expect(client, "latency")
    await peer.latest.push("latency", 42)
    assert await asyncio.wait_for(latency, WAIT) == 42


async def test_pushes_become_events(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    sync_seen: list[Any] = []
    async_seen = asyncio.Queue[Any]()

    async def on_hello(payload: Any) -> None:
        await async_seen.put(payload)

    unsubscribe = client.on("hello", sync_seen.append)
    client.on("hello", on_hello)
    await peer.latest.push("hello", "world")
    assert await asyncio.wait_for(async_seen.get(), WAIT) == "world"
    assert sync_seen == ["world"]
    unsubscribe()
    await peer.latest.push("hello", "again")
    assert await asyncio.wait_for(async_seen.get(), WAIT) == "again"
    assert sync_seen == ["world"]
    update = expect(client, "mesh/record-update")  # built-in pushes keep their wire names
    await peer.latest.push("mesh/record-update", {"recordId": "r", "full": 1, "version": 1})
    assert (await asyncio.wait_for(update, WAIT))["recordId"] == "r"


async def test_failing_callback_is_logged_not_propagated(
    peer: WirePeer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(peer.url)
    await client.connect()

    def broken(payload: Any) -> None:
        raise RuntimeError("user bug")

    client.on("hello", broken)
    after = expect(client, "hello")
    with caplog.at_level(logging.ERROR, logger="mesh_actors.client"):
        await peer.latest.push("hello", 1)
        assert await asyncio.wait_for(after, WAIT) == 1
    assert "user bug" in caplog.text
    assert await client.command("echo", 2) == 2


async def test_garbage_from_the_server_is_ignored(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    for junk in ("not json", "[1,2]", "null", '{"payload":1}', '{"id":999999,"command":"x"}'):
        await peer.latest.send_raw(junk)
    assert await client.command("echo", "ok") == "ok"
    assert client.status is ClientStatus.ONLINE


# -- watchdog and reconnect ----------------------------------------------------------------------


async def test_watchdog_reconnects_when_pings_stop(peer: WirePeer, make_client: ClientFactory) -> None:
    loop = asyncio.get_running_loop()
    client = make_client(peer.url, ping_timeout=0.1, max_missed_pings=1, **FAST)
    online: list[float] = []
    client.on("connect", lambda _: online.append(loop.time()))  # emitted as the watchdog starts
    await client.connect()
    online_at = online[0]
    dropped = expect(client, "disconnect")
    reconnected = expect(client, "reconnect")
    await asyncio.wait_for(dropped, WAIT)
    assert loop.time() - online_at >= 0.2 - 0.01  # ping_timeout * (max_missed_pings + 1)
    assert await asyncio.wait_for(reconnected, WAIT) == "peer-2"
    assert client.connection_id == "peer-2"


async def test_pings_keep_the_watchdog_quiet(make_client: ClientFactory) -> None:
    async with WirePeer(ping_interval=0.03) as peer:
        client = make_client(peer.url, ping_timeout=0.15, max_missed_pings=1, **FAST)
        events = record(client, "disconnect", "reconnect")
        await client.connect()
        pings = asyncio.Queue[None]()
        client.on("ping", lambda: pings.put_nowait(None))
        for _ in range(15):  # ~0.45 s of pings, longer than the 0.3 s watchdog period
            await asyncio.wait_for(pings.get(), WAIT)
        assert events == [] and len(peer.connections) == 1
        await client.close()


async def test_drop_reconnects_with_events_in_order(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    events = record(client, "disconnect", "connect", "reconnect")
    statuses: list[ClientStatus] = []
    client.on("disconnect", lambda: statuses.append(client.status))
    reconnected = expect(client, "reconnect")
    peer.latest.abort()
    await asyncio.wait_for(reconnected, WAIT)
    assert events == [("disconnect", None), ("connect", "peer-2"), ("reconnect", "peer-2")]
    assert statuses == [ClientStatus.RECONNECTING]
    assert client.status is ClientStatus.ONLINE
    assert await client.command("echo", "back") == "back"


async def test_request_in_flight_fails_when_the_connection_drops(
    peer: WirePeer, make_client: ClientFactory
) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    held = asyncio.create_task(client.command("hold", {"gate": "g"}))
    await peer.until(lambda: peer.latest.requests("hold"))
    reconnected = expect(client, "reconnect")
    peer.latest.abort()
    with pytest.raises(MeshConnectionError, match="lost"):
        await asyncio.wait_for(held, WAIT)
    await asyncio.wait_for(reconnected, WAIT)
    assert peer.latest.requests("hold") == []  # never resent: it may have run already


async def test_reconnect_delays_follow_the_backoff_bounds(peer: WirePeer, make_client: ClientFactory) -> None:
    loop = asyncio.get_running_loop()
    jitter = 0.5
    client = make_client(
        peer.url,
        reconnect_initial_delay=0.05,
        reconnect_multiplier=2.0,
        reconnect_max_delay=0.2,
        reconnect_jitter=jitter,
        max_reconnect_attempts=4,
    )
    await client.connect()
    dropped_at: list[float] = []
    client.on("disconnect", lambda: dropped_at.append(loop.time()))
    failed = expect(client, "reconnect_failed")
    peer.reject_status = 503
    peer.latest.abort()
    await asyncio.wait_for(failed, WAIT)
    assert client.status is ClientStatus.OFFLINE
    attempts = peer.attempts[1:]  # attempts[0] was the first, successful connect
    assert len(attempts) == 4
    starts = [dropped_at[0], *attempts[:-1]]
    backoff = client.options.backoff()
    for n, (start, attempt) in enumerate(zip(starts, attempts, strict=True), start=1):
        gap = attempt - start
        ceiling = backoff.ceiling(n)
        assert gap >= ceiling * (1 - jitter) - 0.005, (n, gap)
        assert gap <= ceiling + 0.5, (n, gap)  # slack for the refused handshake on a busy machine


async def test_giving_up_fails_queued_commands(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, max_reconnect_attempts=2, **FAST)
    await client.connect()
    await client.join_room("r")
    dropped = expect(client, "disconnect")
    failed = expect(client, "reconnect_failed")
    peer.reject_status = 503
    peer.latest.abort()
    await asyncio.wait_for(dropped, WAIT)
    queued = asyncio.create_task(client.command("echo", 1))
    waiting = asyncio.create_task(client.connect())  # waits for the reconnect cycle
    await asyncio.wait_for(failed, WAIT)
    with pytest.raises(MeshConnectionError):
        await asyncio.wait_for(queued, WAIT)
    with pytest.raises(MeshConnectionError, match="Gave up"):
        await asyncio.wait_for(waiting, WAIT)
    assert client.joined_rooms == frozenset()
    peer.reject_status = None
    await asyncio.wait_for(client.connect(), WAIT)  # a new connect() starts over
    assert client.status is ClientStatus.ONLINE


async def test_should_reconnect_false_goes_offline(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, should_reconnect=False)
    await client.connect()
    dropped = expect(client, "disconnect")
    peer.latest.abort()
    await asyncio.wait_for(dropped, WAIT)
    assert client.status is ClientStatus.OFFLINE
    with pytest.raises(MeshConnectionError):
        await client.command("echo")
    assert len(peer.connections) == 1


# -- offline queue -------------------------------------------------------------------------------


async def _go_reconnecting(peer: WirePeer, client: Any) -> None:
    """Drop the connection while the peer refuses upgrades; returns once the client noticed."""
    dropped = expect(client, "disconnect")
    peer.reject_status = 503
    peer.latest.abort()
    await asyncio.wait_for(dropped, WAIT)
    assert client.status is ClientStatus.RECONNECTING


async def test_offline_queue_is_flushed_in_order_after_reconnect(
    peer: WirePeer, make_client: ClientFactory
) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    await _go_reconnecting(peer, client)
    refused = len(peer.attempts)
    tasks = [asyncio.create_task(client.command("echo", n)) for n in range(5)]
    await peer.until(lambda: len(peer.attempts) > refused)  # at least one attempt failed meanwhile
    reconnected = expect(client, "reconnect")
    peer.reject_status = None
    await asyncio.wait_for(reconnected, WAIT)
    assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == [0, 1, 2, 3, 4]
    assert [f["payload"] for f in peer.latest.requests("echo")] == [0, 1, 2, 3, 4]


async def test_offline_queue_entries_expire(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, offline_queue_expiry=0.1, **FAST)
    await client.connect()
    await _go_reconnecting(peer, client)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(MeshTimeoutError, match="offline queue"):
        await asyncio.wait_for(client.command("echo", "stale"), WAIT)
    assert loop.time() - start >= 0.1 - 0.01
    reconnected = expect(client, "reconnect")
    peer.reject_status = None
    await asyncio.wait_for(reconnected, WAIT)
    assert await client.command("echo", "fresh") == "fresh"
    assert [f["payload"] for f in peer.latest.requests("echo")] == ["fresh"]


async def test_full_offline_queue_refuses_at_once(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, offline_queue_size=1, **FAST)
    await client.connect()
    await _go_reconnecting(peer, client)
    queued = asyncio.create_task(client.command("echo", 1))
    refused = asyncio.create_task(client.command("echo", 2))  # tasks start in creation order
    with pytest.raises(MeshConnectionError, match="full"):
        await asyncio.wait_for(refused, WAIT)
    reconnected = expect(client, "reconnect")
    peer.reject_status = None
    await asyncio.wait_for(reconnected, WAIT)
    assert await asyncio.wait_for(queued, WAIT) == 1


# -- closing -------------------------------------------------------------------------------------


async def test_close_is_not_permanent(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    statuses: list[ClientStatus] = []
    client.on("disconnect", lambda: statuses.append(client.status))
    await client.close()
    assert statuses == [ClientStatus.OFFLINE]
    assert client.status is ClientStatus.OFFLINE
    assert client.connection_id == "peer-1"  # kept until the next assign-id
    with pytest.raises(MeshConnectionError):
        await client.command("echo")
    await client.close()  # idempotent
    await asyncio.wait_for(client.connect(), WAIT)
    assert client.connection_id == "peer-2"
    reconnected = expect(client, "reconnect")
    peer.latest.abort()
    assert await asyncio.wait_for(reconnected, WAIT) == "peer-3"  # auto-reconnect still on


async def test_close_fails_requests_in_flight(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url)
    await client.connect()
    held = asyncio.create_task(client.command("hold", {"gate": "x"}))
    await peer.until(lambda: peer.latest.requests("hold"))
    await client.close()
    with pytest.raises(MeshConnectionError, match="closed"):
        await asyncio.wait_for(held, WAIT)


async def test_close_while_reconnecting_stops_retrying(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, reconnect_initial_delay=0.02, reconnect_max_delay=0.02)
    await client.connect()
    await _go_reconnecting(peer, client)
    queued = asyncio.create_task(client.command("echo", 1))
    await peer.until(lambda: len(peer.attempts) >= 3)  # two refused reconnect attempts
    await client.close()
    assert client.status is ClientStatus.OFFLINE
    with pytest.raises(MeshConnectionError):
        await asyncio.wait_for(queued, WAIT)
    attempts = len(peer.attempts)
    with pytest.raises(TimeoutError):  # at 0.02 s per attempt, 0.3 s would show several more
        await peer.until(lambda: len(peer.attempts) > attempts, limit=0.3)


async def test_async_context_manager(peer: WirePeer) -> None:
    async with MeshClient(peer.url) as client:
        assert client.status is ClientStatus.ONLINE
    assert client.status is ClientStatus.OFFLINE
    await peer.until(lambda: peer.live() == [])


# -- rooms (wire use only; behaviour is tested against the server) -------------------------------


async def test_rooms_are_rejoined_before_the_reconnect_event(
    peer: WirePeer, make_client: ClientFactory
) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    presence = lambda update: None  # noqa: E731 - stored for later presence support
    await client.join_room("a", presence)
    await client.join_room("b")
    await client.join_room("gone")
    assert await client.leave_room("gone") is True
    assert client.joined_rooms == frozenset({"a", "b"})
    rejoined_at_event: list[set[str]] = []
    client.on(
        "reconnect",
        lambda _: rejoined_at_event.append(
            {f["payload"]["roomName"] for f in peer.latest.requests("mesh/join-room")}
        ),
    )
    reconnected = expect(client, "reconnect")
    peer.latest.abort()
    await asyncio.wait_for(reconnected, WAIT)
    assert rejoined_at_event == [{"a", "b"}]
    assert client.joined_rooms == frozenset({"a", "b"})


async def test_rejoin_errors_are_logged(
    peer: WirePeer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(peer.url, **FAST)
    await client.connect()
    await client.join_room("a")
    peer.handlers["mesh/join-room"] = lambda conn, payload: {"error": "no", "code": "EX", "name": "X"}
    reconnected = expect(client, "reconnect")
    with caplog.at_level(logging.ERROR, logger="mesh_actors.client"):
        peer.latest.abort()
        await asyncio.wait_for(reconnected, WAIT)
    assert "Could not rejoin room 'a'" in caplog.text
    assert client.joined_rooms == frozenset({"a"})  # kept: retried on the next reconnect


async def test_reconnect_method(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, should_reconnect=False, **FAST)
    await client.connect()
    await client.join_room("a")
    await asyncio.wait_for(client.reconnect(), WAIT)
    assert client.connection_id == "peer-2"
    assert peer.latest.requests("mesh/join-room")[0]["payload"] == {"roomName": "a"}
    await client.close()
    with pytest.raises(MeshConnectionError):
        await client.reconnect()


async def test_metadata_helpers_wire_shapes(peer: WirePeer, make_client: ClientFactory) -> None:
    client = make_client(peer.url, raise_errors=False)
    await client.connect()
    assert await client.set_connection_metadata({"a": 1}, strategy="deepMerge") is True
    assert await client.get_connection_metadata("other") == {"of": "other"}
    assert await client.get_connection_metadata() is None
    assert await client.get_room_metadata("r") is None
    sent = {f["command"]: f["payload"] for f in peer.latest.requests()}
    assert sent == {
        "mesh/set-my-connection-metadata": {"metadata": {"a": 1}, "options": {"strategy": "deepMerge"}},
        "mesh/get-connection-metadata": {"connectionId": "other"},
        "mesh/get-my-connection-metadata": {},
        "mesh/get-room-metadata": {"roomName": "r"},
    }
    with pytest.raises(ValueError):
        await client.set_connection_metadata({}, strategy="overwrite")
    peer.handlers["mesh/get-room-metadata"] = lambda conn, payload: {"error": "x", "code": "EX", "name": "X"}
    with pytest.raises(MeshCommandError):  # helpers raise even with raise_errors=False
        await client.get_room_metadata("r")
