"""RedisRoomStore against the real Redis: the keys it writes (docs/design.md#redis-key-layout), what it
loads back (members of unregistered connections dropped), and shards rebuilt over the adapters."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from mesh_actors.actors.registry import Slot
from mesh_actors.features.connections.redis import RedisConnectionStore
from mesh_actors.features.connections.shard import ConnectionShard
from mesh_actors.features.rooms.port import StoredRooms
from mesh_actors.features.rooms.redis import RedisRoomStore
from mesh_actors.features.rooms.shard import RoomShard
from mesh_actors.store.redis import KeyLayout, RedisBackend, connect_redis
from tests.features.directory import RecordingDirectory
from tests.features.redis_state import stored_keys

ALL = Slot(0, 1)


@pytest.fixture
def store(backend: RedisBackend) -> RedisRoomStore:
    return RedisRoomStore(backend, ALL)


@pytest.fixture
def registry(backend: RedisBackend) -> RedisConnectionStore:
    """The connection registry (``connections`` hash) the room store checks members against."""
    return RedisConnectionStore(backend, ALL)


async def registered(registry: RedisConnectionStore, *connections: tuple[str, str]) -> None:
    for cid, gateway_id in connections:
        await registry.register(cid, gateway_id, None, None)


# -- what each method writes (a call returns once its write is in Redis) ------------------------


async def test_add_member_writes_the_room_set_and_the_connection_room_set(
    store: RedisRoomStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.add_member("r1", "c1")
    await store.add_member("r1", "c2")
    await store.add_member("r2", "c1")
    await store.add_member("r2", "c1")  # a set: no duplicate

    assert await stored_keys(redis, key_prefix) == {
        "room:r1": {"c1", "c2"},
        "room:r2": {"c1"},
        "connection:c1:rooms": {"r1", "r2"},
        "connection:c2:rooms": {"r1"},
    }


async def test_remove_members_removes_both_directions(
    store: RedisRoomStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    for room, cid in (("r1", "c1"), ("r1", "c2"), ("r2", "c1"), ("r3", "c1")):
        await store.add_member(room, cid)

    await store.remove_members([("r1", "c1"), ("r2", "c1"), ("r9", "c1")])

    assert await stored_keys(redis, key_prefix) == {
        "room:r1": {"c2"},
        "room:r3": {"c1"},
        "connection:c1:rooms": {"r3"},
        "connection:c2:rooms": {"r1"},
    }
    await store.remove_members([])  # nothing to write
    await store.remove_members([("r1", "c2"), ("r3", "c1")])
    assert await stored_keys(redis, key_prefix) == {}


async def test_set_metadata_writes_the_data_field(
    store: RedisRoomStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.set_metadata("r", b'{"topic":"a"}')
    await store.set_metadata("r", b'{"topic":"b"}')
    assert await stored_keys(redis, key_prefix) == {"roommeta:r": {"data": '{"topic":"b"}'}}


@pytest.mark.parametrize("metadata", [False, True])
async def test_clear_removes_the_memberships_and_the_metadata_only_if_asked(
    store: RedisRoomStore, redis: aioredis.Redis, key_prefix: str, metadata: bool
) -> None:
    for room, cid in (("r", "c1"), ("r", "c2"), ("q", "c1")):
        await store.add_member(room, cid)
    await store.set_metadata("r", b"1")
    await store.set_metadata("q", b"2")

    await store.clear("r", ["c1", "c2"], metadata=metadata)

    expected = {
        "room:q": {"c1"},
        "connection:c1:rooms": {"q"},
        "roommeta:q": {"data": "2"},
    }
    if not metadata:
        expected["roommeta:r"] = {"data": "1"}
    assert await stored_keys(redis, key_prefix) == expected


# -- load --------------------------------------------------------------------------------------


async def test_load_returns_the_members_with_their_gateways_and_the_metadata(
    store: RedisRoomStore, registry: RedisConnectionStore
) -> None:
    assert await store.load() == StoredRooms({}, {})
    await registered(registry, ("c1", "gw-1"), ("c2", "gw-2"), ("c3", "gw-1"))
    for room, cid in (("r1", "c3"), ("r1", "c1"), ("r1", "c2"), ("r2", "c2")):
        await store.add_member(room, cid)
    await store.set_metadata("r1", b'{"topic":"t"}')
    await store.set_metadata("meta-only", b"[1,2]")

    loaded = await store.load()

    assert loaded.members == {
        "r1": [("c1", "gw-1"), ("c2", "gw-2"), ("c3", "gw-1")],
        "r2": [("c2", "gw-2")],
    }
    assert loaded.metadata == {"r1": {"topic": "t"}, "meta-only": [1, 2]}


async def test_load_drops_and_deletes_members_whose_connection_is_gone(
    store: RedisRoomStore, registry: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await registered(registry, ("alive", "gw-1"), ("left", "gw-1"))
    for room, cid in (("r", "alive"), ("r", "ghost"), ("ghosts-only", "ghost"), ("r", "left")):
        await store.add_member(room, cid)
    await store.set_metadata("ghosts-only", b'"kept"')
    await registry.unregister("left", "gw-1")

    loaded = await store.load()

    assert loaded.members == {"r": [("alive", "gw-1")]}
    assert loaded.metadata == {"ghosts-only": "kept"}  # metadata does not depend on members
    assert await stored_keys(redis, key_prefix) == {
        "connections": {"alive": "gw-1"},
        "connections:gw-1": {"alive"},
        "room:r": {"alive"},
        "connection:alive:rooms": {"r"},
        "roommeta:ghosts-only": {"data": '"kept"'},
    }
    assert await store.load() == loaded  # never resurrected


async def test_load_of_a_slot_returns_only_its_slice(
    backend: RedisBackend, store: RedisRoomStore, registry: RedisConnectionStore
) -> None:
    await registered(registry, ("c1", "gw"))
    rooms = [f"room-{i}" for i in range(30)]
    for room in rooms:
        await store.add_member(room, "c1")
        await store.set_metadata(room, f'"{room}"'.encode())

    slots = [Slot(index, 3) for index in range(3)]
    slices = [await RedisRoomStore(backend, slot).load() for slot in slots]

    for slot, loaded in zip(slots, slices, strict=True):
        assert loaded.members, "30 rooms hash to every one of 3 shards"
        assert all(slot.owns(room) for room in loaded.members)
        assert set(loaded.metadata) == set(loaded.members)
        assert all(loaded.metadata[room] == room for room in loaded.metadata)
    loaded_rooms = [room for loaded in slices for room in loaded.members]
    assert sorted(loaded_rooms) == sorted(rooms)  # each room in exactly one slice


async def test_load_matches_the_prefix_and_room_names_literally(
    redis_url: str, key_prefix: str, redis: aioredis.Redis
) -> None:
    # Glob characters in the prefix must not let one deployment load another's rooms.
    client = connect_redis(redis_url)
    try:
        globby = RedisBackend(client, KeyLayout(key_prefix + "a?[x]*:"))
        other = RedisBackend(client, KeyLayout(key_prefix + "abxz:"))
        for backend in (globby, other):
            await RedisConnectionStore(backend, ALL).register("c1", "gw", None, None)
        await RedisRoomStore(globby, ALL).add_member("r*[1]?", "c1")
        await RedisRoomStore(globby, ALL).set_metadata("m\\eta*", b"1")
        await RedisRoomStore(other, ALL).add_member("foreign", "c1")
        await RedisRoomStore(other, ALL).set_metadata("foreign", b"2")

        assert await RedisRoomStore(globby, ALL).load() == StoredRooms(
            {"r*[1]?": [("c1", "gw")]}, {"m\\eta*": 1}
        )
        assert await RedisRoomStore(other, ALL).load() == StoredRooms(
            {"foreign": [("c1", "gw")]}, {"foreign": 2}
        )
    finally:
        await client.aclose()
    assert "room:r*[1]?" in await stored_keys(redis, key_prefix + "a?[x]*:")


# -- shards rebuilt over the adapters ----------------------------------------------------------


async def test_shard_objects_rebuilt_from_redis_hold_the_same_state(backend: RedisBackend) -> None:
    directory = RecordingDirectory("gw-1", "gw-2")
    conns = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))
    rooms = RoomShard(ALL, RedisRoomStore(backend, ALL), directory)
    await conns.register("c1", "gw-1", {"user": "u1"})
    await conns.register("c2", "gw-2")
    await conns.set_metadata("c2", {"a": {"b": 1}})
    await conns.set_metadata("c2", {"a": {"c": 2}}, "deepMerge")
    for room, cid, gateway in (("r1", "c1", "gw-1"), ("r1", "c2", "gw-2"), ("r2", "c2", "gw-2")):
        await rooms.join(room, cid, gateway)
    await rooms.set_metadata("r1", {"topic": "t"})
    await rooms.set_metadata("empty-room", {"kept": True})
    await conns.flush()
    await rooms.flush()

    fresh_conns = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))
    fresh_rooms = RoomShard(ALL, RedisRoomStore(backend, ALL), directory)
    assert await fresh_conns.rebuild() == 2
    assert await fresh_rooms.rebuild() == 2
    assert await fresh_conns.locate(["c1", "c2", "c3"]) == {"c1": "gw-1", "c2": "gw-2"}
    assert await fresh_conns.get_metadata_many(["c1", "c2"]) == {
        "c1": {"user": "u1"},
        "c2": {"a": {"b": 1, "c": 2}},
    }
    assert await fresh_conns.get_auth("c1") == {"user": "u1"}
    assert await fresh_rooms.rooms_of("c2") == ["r1", "r2"]
    assert sorted(await fresh_rooms.members("r1")) == ["c1", "c2"]
    assert await fresh_rooms.members("r2") == ["c2"]
    assert await fresh_rooms.get_metadata("r1") == {"topic": "t"}
    assert await fresh_rooms.get_metadata("empty-room") == {"kept": True}
    assert await fresh_rooms.gateway_ids() == ["gw-1", "gw-2"]
    # The fan-out index came back too: one tell per gateway, and a drop of gw-2 removes exactly
    # its members.
    assert await fresh_rooms.broadcast("r1", b"m") == 2
    assert directory.links["gw-1"].deliveries() == [(b"m", {"c1"})]
    assert directory.links["gw-2"].deliveries() == [(b"m", {"c2"})]
    assert await fresh_rooms.drop_gateway("gw-2") == ["c2"]
    assert await fresh_rooms.members("r1") == ["c1"]
    assert await fresh_rooms.rooms_of("c2") == []


async def test_each_room_shard_rebuilds_only_its_own_slice(
    backend: RedisBackend, registry: RedisConnectionStore
) -> None:
    directory = RecordingDirectory("gw")
    await registered(registry, ("c1", "gw"), ("c2", "gw"))
    writer = RoomShard(ALL, RedisRoomStore(backend, ALL), directory)  # one shard owning everything
    rooms = [f"room-{i}" for i in range(20)]
    for room in rooms:
        await writer.join(room, "c1", "gw")
        await writer.join(room, "c2", "gw")
    await writer.flush()

    shards = [RoomShard(Slot(i, 3), RedisRoomStore(backend, Slot(i, 3)), directory) for i in range(3)]
    counts = [await shard.rebuild() for shard in shards]

    assert sum(counts) == 20 and all(counts)
    owned = [await shard.rooms() for shard in shards]
    assert sorted(room for held in owned for room in held) == sorted(rooms)  # none owned twice
    for shard, held in zip(shards, owned, strict=True):
        assert all(shard.slot.owns(room) for room in held)
        assert await shard.rooms_of("c1") == sorted(held)
        assert all([sorted(await shard.members(room)) == ["c1", "c2"] for room in held])
