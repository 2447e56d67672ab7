"""Rooms, room metadata, broadcasts and disconnect cleanup.

See docs/protocol.md#rooms, docs/protocol.md#broadcasts, docs/protocol.md#connection-life-cycle.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import RawClient, raw_client


@pytest.fixture
async def server(make_any_server: ServerFactory) -> MeshServer:
    """A server of its own per test, on each runtime (inline, and Ray with two gateways)."""
    return await make_any_server()


@pytest.fixture
async def inline_server(make_server: ServerFactory) -> MeshServer:
    """For tests that look inside the process (hooks with closures, the local gateway)."""
    return await make_server()


async def nothing_more(client: RawClient, command: str) -> None:
    """Assert that no ``command`` push is pending, after a round trip that would have carried it."""
    await client.call("mesh/noop")
    assert not [f for f in client.frames if f.get("command") == command]


async def test_broadcast_room_reaches_members_only(server: MeshServer) -> None:
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b, raw_client(url) as outsider:
        await a.call("mesh/join-room", {"roomName": "vip"})
        await b.call("rt/join-room", {"roomName": "vip"})
        assert await server.broadcast_room("vip", "news", {"n": 1}) == 2
        assert (await a.push("news")) == {"command": "news", "payload": {"n": 1}}
        assert (await b.push("news")) == {"command": "news", "payload": {"n": 1}}
        await nothing_more(outsider, "news")


async def test_broadcast_room_exclude(server: MeshServer) -> None:
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b, raw_client(url) as c:
        for client in (a, b, c):
            await client.call("mesh/join-room", {"roomName": "r"})
        assert await server.broadcast_room_exclude("r", "msg", "hi", [a.connection_id, b.connection_id]) == 1
        assert (await c.push("msg"))["payload"] == "hi"
        await nothing_more(a, "msg")
        await nothing_more(b, "msg")


async def test_broadcast_and_broadcast_exclude_and_send_to(server: MeshServer) -> None:
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b:
        assert await server.broadcast("hello", "world") == 2
        assert (await a.push("hello"))["payload"] == "world"
        assert (await b.push("hello"))["payload"] == "world"
        await server.broadcast_exclude("only-b", None, a.connection_id)
        assert (await b.push("only-b")) == {"command": "only-b", "payload": None}
        await nothing_more(a, "only-b")
        assert await server.send_to(a.connection_id, "dm", {"text": "psst"}) == 1
        assert (await a.push("dm"))["payload"] == {"text": "psst"}
        await nothing_more(b, "dm")
        assert await server.broadcast("subset", 1, [b.connection_id, "no-such-connection"]) == 1
        assert (await b.push("subset"))["payload"] == 1
        await nothing_more(a, "subset")


async def test_room_api_membership(server: MeshServer) -> None:
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b:
        await a.call("mesh/join-room", {"roomName": "room1"})
        await a.call("mesh/join-room", {"roomName": "room2"})
        await server.add_to_room("room1", b.connection_id)
        assert await server.is_in_room("room1", a.connection_id)
        assert await server.is_in_room("room1", b.connection_id)
        assert await server.is_in_room("room2", a.connection_id)
        assert not await server.is_in_room("room2", b.connection_id)
        assert not await server.is_in_room("room3", a.connection_id)
        assert sorted(await server.get_all_rooms()) == ["room1", "room2"]
        assert await server.get_room_members("room1") == [a.connection_id, b.connection_id]
        assert await server.remove_from_room("room1", a.connection_id)
        assert not await server.remove_from_room("room1", a.connection_id)
        assert sorted(await server.get_all_rooms()) == ["room1", "room2"]
        await server.remove_from_room("room1", b.connection_id)
        assert await server.get_all_rooms() == ["room2"]
        assert await server.remove_from_all_rooms(a.connection_id) == ["room2"]
        assert await server.get_all_rooms() == []


async def test_add_to_room_of_unknown_connection_fails_clearly(server: MeshServer) -> None:
    from mesh_actors import CodeError

    with pytest.raises(CodeError) as caught:
        await server.add_to_room("r", "ghost")
    assert caught.value.code == "ENOCONN"
    assert await server.get_all_rooms() == []


async def test_room_metadata_api(server: MeshServer) -> None:
    rooms = server.room_manager
    await rooms.set_metadata("room1", {"name": "Room 1", "public": True, "maxUsers": 5})
    await rooms.set_metadata("room2", {"name": "Room 2", "public": True, "maxUsers": 20})
    assert await rooms.get_metadata("room1") == {"name": "Room 1", "public": True, "maxUsers": 5}
    assert await rooms.set_metadata("room1", {"topic": "x"}, "merge") == {
        "name": "Room 1",
        "public": True,
        "maxUsers": 5,
        "topic": "x",
    }
    assert await rooms.get_metadata("unknown") is None
    big = [m["id"] for m in await rooms.get_all_metadata() if m["metadata"]["maxUsers"] > 10]
    assert big == ["room2"]
    async with raw_client(url_of(server)) as a:
        await a.call("mesh/join-room", {"roomName": "room1"})
        assert await server.clear_room("room1") == [a.connection_id]
        assert await rooms.get_metadata("room1") is not None  # clear keeps metadata
        assert await server.connection_manager.rooms_of(a.connection_id) == []
        await a.call("mesh/join-room", {"roomName": "room1"})
        assert await server.delete_room("room1") == [a.connection_id]
        assert await rooms.get_metadata("room1") is None  # delete removes it
        assert await a.call("mesh/get-room-metadata", {"roomName": "room1"}) == {"metadata": None}


async def test_connection_metadata_api(server: MeshServer) -> None:
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b:
        manager = server.connection_manager
        await manager.set_metadata(a.connection_id, {"name": "A"})
        await server.set_connection_metadata(b.connection_id, {"name": "B"})
        assert await manager.get_metadata(a.connection_id) == {"name": "A"}
        assert await manager.get_all_metadata() == [
            {"id": a.connection_id, "metadata": {"name": "A"}},
            {"id": b.connection_id, "metadata": {"name": "B"}},
        ]
        assert await manager.get_all_metadata_for_room("non-existent-room") == []
        await server.add_to_room("room-a", a.connection_id)
        assert await manager.get_all_metadata_for_room("room-a") == [
            {"id": a.connection_id, "metadata": {"name": "A"}}
        ]
        assert await b.call("mesh/get-connection-metadata", {"connectionId": a.connection_id}) == {
            "metadata": {"name": "A"}
        }
        assert await server.total_connection_count() == 2


async def test_disconnect_cleans_rooms_metadata_and_redis(inline_server: MeshServer, redis: Any) -> None:
    server = inline_server
    url = url_of(server)
    prefix = server.settings.key_prefix
    disconnected: list[str] = []
    done = asyncio.Event()

    def on_disconnection(connection: Any) -> None:
        disconnected.append(connection.id)
        assert connection.is_dead
        done.set()

    server.on_disconnection(on_disconnection)
    async with raw_client(url) as stays:
        await stays.call("mesh/join-room", {"roomName": "r"})
        async with raw_client(url) as leaves:
            await leaves.call("mesh/set-my-connection-metadata", {"metadata": {"x": 1}})
            await leaves.call("mesh/join-room", {"roomName": "r"})
            await leaves.call("mesh/join-room", {"roomName": "s"})
            gone = leaves.connection_id
            assert await redis.hget(f"{prefix}connections", gone) == server.instance_id
        await asyncio.wait_for(done.wait(), 5)
        assert disconnected == [gone]
        assert await server.get_room_members("r") == [stays.connection_id]
        assert await server.get_all_rooms() == ["r"]
        assert await server.connection_manager.get_metadata(gone) is None
        # Redis holds exactly the survivor's state (docs/design.md#redis-key-layout).
        assert await redis.smembers(f"{prefix}room:r") == {stays.connection_id}
        assert not await redis.exists(f"{prefix}room:s")
        assert not await redis.exists(f"{prefix}connection:{gone}:rooms")
        assert await redis.hget(f"{prefix}connections", gone) is None
        assert await redis.hget(f"{prefix}connection-meta", gone) is None
        assert await redis.smembers(f"{prefix}connections:{server.instance_id}") == {stays.connection_id}
        assert await redis.smembers(f"{prefix}connection:{stays.connection_id}:rooms") == {"r"}


async def test_on_connection_hook_sees_live_connection(make_server: ServerFactory) -> None:
    seen: list[Any] = []
    ready = asyncio.Event()

    def setup(server: MeshServer) -> None:
        @server.on_connection
        async def hook(connection: Any) -> None:
            seen.append(
                (
                    connection.id,
                    connection.is_dead,
                    connection in server.connection_manager.get_local_connections(),
                )
            )
            ready.set()

        @server.on_connection
        def broken(connection: Any) -> None:
            raise RuntimeError("a failing hook must not break the connection")

    server = await make_server(setup=setup)
    async with raw_client(url_of(server)) as a:
        await asyncio.wait_for(ready.wait(), 5)
        assert seen == [(a.connection_id, False, True)]
        assert await a.call("mesh/noop") is True


async def test_room_guard_and_closed_rooms(make_any_server: ServerFactory) -> None:
    def setup(server: MeshServer) -> None:
        server.guard_room(
            re.compile(r"^admin:"), lambda connection, room: (connection.auth or {}).get("role") == "admin"
        )
        server.guard_room("open-by-pattern")

    server = await make_any_server(
        setup=setup,
        rooms_require_guard=True,
        authenticate_connection=lambda request: {"role": request.query.get("role", "guest")},
    )
    url = url_of(server)
    async with raw_client(url + "/?role=admin") as admin, raw_client(url) as guest:
        assert (await admin.call("mesh/join-room", {"roomName": "admin:ops"}))["success"] is True
        assert await guest.call("mesh/join-room", {"roomName": "admin:ops"}) == {
            "success": False,
            "present": [],
        }
        refused = await guest.call("mesh/get-room-metadata", {"roomName": "admin:ops"})
        assert refused["code"] == "EFORBIDDEN"
        assert (await guest.call("rt/join-room", {"roomName": "open-by-pattern"}))["success"] is True
        # rooms_require_guard: a room no pattern matches is closed to clients...
        assert (await guest.call("mesh/join-room", {"roomName": "elsewhere"}))["success"] is False
        # ...but the server may still place anyone anywhere.
        await server.add_to_room("elsewhere", guest.connection_id)
        assert await server.get_room_members("admin:ops") == [admin.connection_id]


@pytest.mark.parametrize(
    ("policy", "peer", "stranger"), [("any", True, True), ("room-peers", True, False), ("self", False, False)]
)
async def test_connection_metadata_read_policy(
    make_any_server: ServerFactory, policy: str, peer: bool, stranger: bool
) -> None:
    server = await make_any_server(connection_metadata_read=policy)
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b, raw_client(url) as c:
        await a.call("mesh/set-my-connection-metadata", {"metadata": {"secret": 1}})
        await a.call("mesh/join-room", {"roomName": "shared"})
        await b.call("mesh/join-room", {"roomName": "shared"})
        as_peer = await b.call("mesh/get-connection-metadata", {"connectionId": a.connection_id})
        as_stranger = await c.call("mesh/get-connection-metadata", {"connectionId": a.connection_id})
        own = await a.call("mesh/get-connection-metadata", {"connectionId": a.connection_id})
    assert own == {"metadata": {"secret": 1}}
    assert (as_peer == {"metadata": {"secret": 1}}) is peer
    assert (as_stranger == {"metadata": {"secret": 1}}) is stranger
    for result, allowed in ((as_peer, peer), (as_stranger, stranger)):
        if not allowed:
            assert result["code"] == "EFORBIDDEN"


async def test_client_metadata_writes_can_be_disabled(make_any_server: ServerFactory) -> None:
    server = await make_any_server(client_metadata_writes=False)
    async with raw_client(url_of(server)) as a:
        refused = await a.call("mesh/set-my-connection-metadata", {"metadata": {"role": "admin"}})
        assert refused["code"] == "EFORBIDDEN"
        assert await a.call("mesh/get-my-connection-metadata") == {"metadata": None}


async def test_server_as_async_context_manager(redis_url: str, key_prefix: str) -> None:
    async with MeshServer(redis_url=redis_url, key_prefix=key_prefix, port=0) as server:
        url = url_of(server)  # known only once the server listens
        async with raw_client(url) as a:
            assert await a.call("mesh/noop") is True
    assert server.local_gateway is None
