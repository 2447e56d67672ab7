"""Client behaviour against real servers: ours (``mesh_server_url``, both dialects) and, marked
``interop``, the original @prsm/realtime 1.8.1 server (``rt/`` only). The same tests run against
both, so they also prove the client speaks the reference's wire format.

Both servers expose ``echo``, ``throws``, ``broadcast-room`` and ``set-room-meta`` (see
``tests/conftest.py`` and ``tests/interop/js/reference_server.mjs``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from mesh_actors import AuthenticationError
from mesh_actors.client import (
    ClientStatus,
    Dialect,
    MeshClient,
    MeshCommandError,
    MeshConnectionError,
)
from tests.conftest import ServerFactory, expose_test_commands, url_of

from .client_events import ClientFactory, expect

WAIT = 5.0
"""Upper bound of every wait on an event; a passing test never reaches it."""


@pytest.fixture(
    params=[
        "ours",
        pytest.param("ours-on-ray", marks=pytest.mark.ray),
        pytest.param("reference", marks=pytest.mark.interop),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """URL of the server under test: ours (inline, or on Ray with two gateways) or the reference."""
    if request.param == "ours-on-ray":
        return url_of(request.getfixturevalue("shared_ray_server"))
    name = "mesh_server_url" if request.param == "ours" else "reference_server_url"
    url: str = request.getfixturevalue(name)
    return url


def unique(name: str) -> str:
    """A room name no other test uses (the reference server shares one Redis database)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def online(make_client: ClientFactory, url: str, **options: Any) -> MeshClient:
    client = make_client(url, **options)
    await asyncio.wait_for(client.connect(), WAIT)
    return client


def by_id(members: list[Any]) -> list[Any]:
    return sorted(members, key=lambda member: member["id"])


# -- connection and commands ---------------------------------------------------------------------


async def test_connect_assigns_an_id(server_url: str, make_client: ClientFactory) -> None:
    client = make_client(server_url)
    connected = expect(client, "connect")
    statuses: list[ClientStatus] = []
    client.on("connect", lambda _: statuses.append(client.status))
    await asyncio.wait_for(client.connect(), WAIT)
    assert isinstance(client.connection_id, str) and client.connection_id
    assert await connected == client.connection_id
    assert statuses == [ClientStatus.ONLINE]
    assert client.dialect in (Dialect.MESH, Dialect.RT)
    other = await online(make_client, server_url)
    assert other.connection_id != client.connection_id


async def test_echo_round_trips_a_large_payload(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    payload = {"items": [f"item-{i}" for i in range(1000)], "nested": {"a": {"b": [1, 2.5, None, "é"]}}}
    assert await client.command("echo", payload, timeout=2) == payload
    assert await client.command("echo") == {}
    assert await client.command("echo", "Hello, World!") == "Hello, World!"


async def test_concurrent_commands_resolve_independently(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    results = await asyncio.wait_for(asyncio.gather(*(client.command("echo", n) for n in range(200))), WAIT)
    assert results == list(range(200))


async def test_error_payloads(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    with pytest.raises(MeshCommandError) as unknown:
        await client.command("unknown-command")
    assert unknown.value.payload == {
        "error": 'Command "unknown-command" not found',
        "code": "ENOTFOUND",
        "name": "CommandError",
    }
    assert (unknown.value.code, unknown.value.name) == ("ENOTFOUND", "CommandError")
    thrown = {"error": "boom", "code": "ESERVER", "name": "Error"}
    assert await client.command("throws", raise_errors=False) == thrown
    lenient = await online(make_client, server_url, raise_errors=False)
    assert await lenient.command("throws") == thrown
    assert await client.command("echo", "still usable") == "still usable"


# -- rooms ---------------------------------------------------------------------------------------


async def test_join_room_lists_members_with_their_metadata(
    server_url: str, make_client: ClientFactory
) -> None:
    room = unique("members")
    alice = await online(make_client, server_url)
    bob = await online(make_client, server_url)
    assert await alice.set_connection_metadata({"name": "alice"}) is True
    assert await alice.join_room(room) == {
        "success": True,
        "present": [{"id": alice.connection_id, "metadata": {"name": "alice"}}],
    }
    joined = await bob.join_room(room)
    assert joined["success"] is True
    assert by_id(joined["present"]) == by_id(
        [
            {"id": alice.connection_id, "metadata": {"name": "alice"}},
            {"id": bob.connection_id, "metadata": None},
        ]
    )
    assert alice.joined_rooms == frozenset({room})


async def test_leave_room(server_url: str, make_client: ClientFactory) -> None:
    room = unique("leave")
    alice = await online(make_client, server_url)
    bob = await online(make_client, server_url)
    await alice.join_room(room)
    await bob.join_room(room)
    assert await alice.leave_room(room) is True
    assert alice.joined_rooms == frozenset()
    carol = await online(make_client, server_url)
    present = (await carol.join_room(room))["present"]
    assert {member["id"] for member in present} == {bob.connection_id, carol.connection_id}


async def test_room_broadcast_reaches_members_as_events(server_url: str, make_client: ClientFactory) -> None:
    room, other_room = unique("news"), unique("other")
    alice = await online(make_client, server_url)
    bob = await online(make_client, server_url)
    carol = await online(make_client, server_url)
    await alice.join_room(room)
    await bob.join_room(room)
    await carol.join_room(other_room)
    alice_news, bob_news, carol_news = expect(alice, "news"), expect(bob, "news"), expect(carol, "news")
    broadcast = {"roomName": room, "command": "news", "payload": {"n": 1}}
    assert await alice.command("broadcast-room", broadcast) is True
    assert await asyncio.wait_for(alice_news, WAIT) == {"n": 1}
    assert await asyncio.wait_for(bob_news, WAIT) == {"n": 1}
    # Carol is not a member: the first "news" she gets is the one sent to her own room afterwards
    # (pushes to one socket keep their order, so an earlier one would have come first).
    await bob.command("broadcast-room", {"roomName": other_room, "command": "news", "payload": {"n": 2}})
    assert await asyncio.wait_for(carol_news, WAIT) == {"n": 2}


async def test_room_metadata(server_url: str, make_client: ClientFactory) -> None:
    room = unique("meta")
    client = await online(make_client, server_url)
    assert await client.get_room_metadata(room) is None
    await client.command("set-room-meta", {"roomName": room, "metadata": {"topic": "x"}})
    assert await client.get_room_metadata(room) == {"topic": "x"}


# -- connection metadata -------------------------------------------------------------------------


async def test_connection_metadata_strategies(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    reader = await online(make_client, server_url)
    assert await client.get_connection_metadata() is None
    base = {"user": "u1", "status": "online", "preferences": {"theme": "dark", "lang": "en"}}
    assert await client.set_connection_metadata(base) is True
    assert await client.get_connection_metadata() == base
    assert await reader.get_connection_metadata(client.connection_id) == base

    assert await client.set_connection_metadata({"status": "away", "role": "admin"}, strategy="merge")
    assert await client.get_connection_metadata() == {
        "user": "u1",
        "status": "away",
        "role": "admin",
        "preferences": {"theme": "dark", "lang": "en"},
    }

    assert await client.set_connection_metadata(
        {"preferences": {"theme": "light", "notifications": {"push": False}}}, strategy="deepMerge"
    )
    assert (await client.get_connection_metadata())["preferences"] == {
        "theme": "light",
        "lang": "en",
        "notifications": {"push": False},
    }

    assert await client.set_connection_metadata({"only": 1}, strategy="replace")
    assert await reader.get_connection_metadata(client.connection_id) == {"only": 1}


async def test_merge_over_a_string_replaces_it(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    assert await client.set_connection_metadata("initial-string") is True
    assert await client.set_connection_metadata({"user": "test-user"}, strategy="merge") is True
    assert await client.get_connection_metadata() == {"user": "test-user"}


# -- life cycle ----------------------------------------------------------------------------------


async def test_reconnect_rejoins_rooms(server_url: str, make_client: ClientFactory) -> None:
    room = unique("rejoin")
    client = await online(make_client, server_url)
    await client.join_room(room)
    old_id = client.connection_id
    reconnected = expect(client, "reconnect")
    await asyncio.wait_for(client.reconnect(), WAIT)
    new_id = await asyncio.wait_for(reconnected, WAIT)
    assert new_id == client.connection_id != old_id
    assert client.joined_rooms == frozenset({room})
    observer = await online(make_client, server_url)
    present = (await observer.join_room(room))["present"]
    assert new_id in {member["id"] for member in present}


async def test_close_then_connect_again(server_url: str, make_client: ClientFactory) -> None:
    client = await online(make_client, server_url)
    statuses: list[ClientStatus] = []
    client.on("disconnect", lambda: statuses.append(client.status))
    first_id = client.connection_id
    await client.close()
    assert statuses == [ClientStatus.OFFLINE] and client.status is ClientStatus.OFFLINE
    with pytest.raises(MeshConnectionError):
        await client.command("echo")
    await asyncio.wait_for(client.connect(), WAIT)
    assert client.connection_id != first_id
    assert await client.command("echo", 1) == 1


async def test_closing_client_leaves_its_rooms(server_url: str, make_client: ClientFactory) -> None:
    room = unique("close")
    leaver = await online(make_client, server_url)
    stayer = await online(make_client, server_url)
    await leaver.join_room(room)
    await stayer.join_room(room)
    await leaver.close()
    # The server cleans up after the socket closes; poll it through the protocol, bounded.
    async with asyncio.timeout(WAIT):
        while True:
            probe = await online(make_client, server_url)
            ids = {member["id"] for member in (await probe.join_room(room))["present"]}
            await probe.close()
            if leaver.connection_id not in ids:
                break
    assert stayer.connection_id in ids


# -- dialects ------------------------------------------------------------------------------------


async def test_our_server_speaks_both_dialects(mesh_server_url: str, make_client: ClientFactory) -> None:
    room = unique("dialects")
    mesh = await online(make_client, mesh_server_url, dialect="mesh")
    rt = await online(make_client, mesh_server_url, dialect="rt")
    detected = await online(make_client, mesh_server_url)
    assert (mesh.dialect, rt.dialect) == (Dialect.MESH, Dialect.RT)
    assert detected.dialect is not None
    await mesh.join_room(room)
    await rt.join_room(room)
    present = (await detected.join_room(room))["present"]
    assert {m["id"] for m in present} == {mesh.connection_id, rt.connection_id, detected.connection_id}
    assert await rt.set_connection_metadata({"via": "rt"})
    assert await mesh.get_connection_metadata(rt.connection_id) == {"via": "rt"}


@pytest.mark.interop
async def test_reference_server_speaks_rt(reference_server_url: str, make_client: ClientFactory) -> None:
    detected = await online(make_client, reference_server_url)
    assert detected.dialect is Dialect.RT
    wrong = make_client(reference_server_url, dialect="mesh", open_timeout=0.5)
    with pytest.raises(MeshConnectionError, match="assign-id"):  # it never sends mesh/assign-id
        await asyncio.wait_for(wrong.connect(), WAIT)


# -- our server only: authentication and heartbeats ------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_upgrade_reports_the_status(
    make_server: ServerFactory, make_client: ClientFactory, status: int
) -> None:
    def authenticate(request: Any) -> Any:
        if request.headers.get("authorization") == "Bearer good":
            return {"user": "ok"}
        if status == 401:
            return None
        raise AuthenticationError(status, "Forbidden")

    server = await make_server(setup=expose_test_commands, authenticate_connection=authenticate)
    refused = make_client(url_of(server))
    with pytest.raises(MeshConnectionError) as info:
        await asyncio.wait_for(refused.connect(), WAIT)
    assert info.value.status == status
    assert refused.status is ClientStatus.OFFLINE
    accepted = await online(make_client, url_of(server), headers={"Authorization": "Bearer good"})
    assert await accepted.get_connection_metadata() == {"user": "ok"}


async def test_server_heartbeats_keep_the_client_online(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    # Latency probes are skipped between a ping and its pong (docs/protocol.md#latency): an interval that is
    # not
    # a multiple of the ping interval keeps them from always landing in that window.
    server = await make_server(setup=expose_test_commands, ping_interval=0.07, latency_interval=0.03)
    client = make_client(url_of(server), ping_timeout=0.07, max_missed_pings=2)
    dropped: list[None] = []
    client.on("disconnect", lambda: dropped.append(None))
    latency = expect(client, "latency")
    pings = asyncio.Queue[None]()
    client.on("ping", lambda: pings.put_nowait(None))
    await asyncio.wait_for(client.connect(), WAIT)
    for _ in range(8):  # ~0.56 s of pings: beyond the 0.21 s watchdog period, and answered with pong
        await asyncio.wait_for(pings.get(), WAIT)
    assert isinstance(await asyncio.wait_for(latency, WAIT), int | float)
    assert dropped == [] and client.status is ClientStatus.ONLINE


async def test_client_reconnects_and_rejoins_after_a_server_restart(
    make_server: ServerFactory, redis_url: str, key_prefix: str, make_client: ClientFactory
) -> None:
    from mesh_actors import MeshServer

    first = await make_server(setup=expose_test_commands)
    port = first.port
    client = await online(make_client, url_of(first), reconnect_initial_delay=0.05, reconnect_max_delay=0.2)
    await client.join_room("survivors")
    old_id = client.connection_id
    reconnected = expect(client, "reconnect")
    await first.close()  # every socket gets 1001 "going away"; the client starts reconnecting

    second = MeshServer(redis_url=redis_url, key_prefix=key_prefix)
    expose_test_commands(second)
    await second.start("127.0.0.1", port)
    try:
        new_id = await asyncio.wait_for(reconnected, WAIT)
        assert new_id != old_id
        assert await second.get_room_members("survivors") == [new_id]
        assert await client.command("echo", "back") == "back"
    finally:
        await client.close()
        await second.close()
