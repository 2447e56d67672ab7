"""RedisConnectionStore against the real Redis: the keys it writes (docs/design.md#redis-key-layout),
what it loads back, and shards rebuilt over it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from mesh_actors.actors.registry import Slot
from mesh_actors.features.connections.port import StoredConnection
from mesh_actors.features.connections.redis import RedisConnectionStore
from mesh_actors.features.connections.shard import ConnectionShard
from mesh_actors.features.rooms.redis import RedisRoomStore
from mesh_actors.store.redis import KeyLayout, RedisBackend
from tests.features.redis_state import stored_keys

ALL = Slot(0, 1)


@pytest.fixture
def store(backend: RedisBackend) -> RedisConnectionStore:
    return RedisConnectionStore(backend, ALL)


# -- what each method writes (a call returns once its write is in Redis) ------------------------


async def test_register_writes_the_registry_the_gateway_set_auth_and_metadata(
    store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.register("c1", "gw-1", b'{"user":"u1"}', b'{"user":"u1"}')
    await store.register("c2", "gw-1", b"0", None)
    await store.register("c3", "gw-2", None, None)

    assert await stored_keys(redis, key_prefix) == {
        "connections": {"c1": "gw-1", "c2": "gw-1", "c3": "gw-2"},
        "connections:gw-1": {"c1", "c2"},
        "connections:gw-2": {"c3"},
        "connection-auth": {"c1": '{"user":"u1"}', "c2": "0"},
        "connection-meta": {"c1": '{"user":"u1"}'},
    }


async def test_set_metadata_writes_the_metadata_hash(
    store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.register("c1", "gw", None, None)
    await store.set_metadata("c1", b'{"a":1}')
    await store.set_metadata("c1", b'{"a":2}')

    assert await stored_keys(redis, key_prefix) == {
        "connections": {"c1": "gw"},
        "connections:gw": {"c1"},
        "connection-meta": {"c1": '{"a":2}'},
    }


async def test_unregister_removes_every_key_the_connection_owner_writes(
    backend: RedisBackend, store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.register("c1", "gw", b'{"user":"u1"}', b'{"user":"u1"}')
    await store.register("c2", "gw", b'{"user":"u2"}', b'{"user":"u2"}')
    # A room set of c1 (the room owner writes it, keyed by the connection).
    await RedisRoomStore(backend, ALL).add_member("r", "c1")
    await store.unregister("c1", "gw")

    assert await stored_keys(redis, key_prefix) == {
        "connections": {"c2": "gw"},
        "connections:gw": {"c2"},
        "connection-auth": {"c2": '{"user":"u2"}'},
        "connection-meta": {"c2": '{"user":"u2"}'},
        # The room owner's keys: only its own drop_connection removes them.
        "room:r": {"c1"},
        "connection:c1:rooms": {"r"},
    }
    await store.unregister("c2", "gw")
    assert await stored_keys(redis, key_prefix) == {"room:r": {"c1"}, "connection:c1:rooms": {"r"}}


async def test_unregister_without_a_gateway_leaves_the_gateway_sets(
    store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.register("c1", "gw", None, b"1")
    await store.unregister("c1", None)
    assert await stored_keys(redis, key_prefix) == {"connections:gw": {"c1"}}


async def test_forget_gateway_deletes_the_gateway_set_only(
    store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    await store.register("a1", "gw-a", None, None)
    await store.register("b1", "gw-b", None, None)
    await store.unregister("a1", None)  # as a shard that lost track of a1's gateway would
    await store.forget_gateway("gw-a")

    assert await stored_keys(redis, key_prefix) == {
        "connections": {"b1": "gw-b"},
        "connections:gw-b": {"b1"},
    }


# -- load --------------------------------------------------------------------------------------


async def test_load_returns_what_was_stored(store: RedisConnectionStore) -> None:
    assert await store.load() == []
    await store.register("c1", "gw-1", b'{"user":"u1"}', b'{"user":"u1"}')
    await store.register("c2", "gw-2", b"0", None)
    await store.register("c3", "gw-1", None, None)
    await store.set_metadata("c3", b'{"a":[1,2]}')
    await store.register("gone", "gw-1", b"1", b"1")
    await store.unregister("gone", "gw-1")

    loaded = await store.load()

    assert sorted(loaded, key=lambda entry: entry.id) == [
        StoredConnection("c1", "gw-1", {"user": "u1"}, {"user": "u1"}),
        StoredConnection("c2", "gw-2", None, 0),
        StoredConnection("c3", "gw-1", {"a": [1, 2]}, None),
    ]
    assert [entry.id for entry in await store.load()] == [entry.id for entry in loaded]  # stable


async def test_load_of_a_slot_returns_only_its_slice(
    backend: RedisBackend, store: RedisConnectionStore
) -> None:
    ids = [f"conn-{i}" for i in range(30)]
    for cid in ids:
        await store.register(cid, "gw", None, f'"{cid}"'.encode())

    slots = [Slot(index, 3) for index in range(3)]
    slices = [await RedisConnectionStore(backend, slot).load() for slot in slots]

    for slot, entries in zip(slots, slices, strict=True):
        assert entries, "30 ids hash to every one of 3 shards"
        assert all(slot.owns(entry.id) for entry in entries)
        assert all(entry.metadata == entry.id for entry in entries)
    loaded = [entry.id for entries in slices for entry in entries]
    assert sorted(loaded) == sorted(ids)  # each id in exactly one slice


async def test_flush_waits_for_the_queued_writes(
    store: RedisConnectionStore, redis: aioredis.Redis, key_prefix: str
) -> None:
    assert await store.flush() is True  # nothing queued

    async def flushed() -> int:
        # Runs after the 50 registrations queued their writes (gather starts them in order).
        assert await store.flush(timeout=5) is True
        return int(await redis.hlen(KeyLayout(key_prefix).connections))

    results = await asyncio.gather(*(store.register(f"c{i}", "gw", None, None) for i in range(50)), flushed())
    assert results[-1] == 50


# -- shards rebuilt over the adapter -----------------------------------------------------------


async def test_each_shard_rebuilds_only_its_own_slice(backend: RedisBackend) -> None:
    writer = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))  # one shard owning everything
    ids = [f"conn-{i}" for i in range(20)]
    for cid in ids:
        await writer.register(cid, "gw")
    await writer.flush()

    shards = [ConnectionShard(Slot(i, 3), RedisConnectionStore(backend, Slot(i, 3))) for i in range(3)]
    counts = [await shard.rebuild() for shard in shards]

    assert sum(counts) == 20 and all(counts)
    owned = [set(await shard.locate(ids)) for shard in shards]
    assert set().union(*owned) == set(ids)
    assert sum(len(o) for o in owned) == 20  # no connection owned twice
    assert all(shard.slot.owns(cid) for shard, cids in zip(shards, owned, strict=True) for cid in cids)


async def test_a_rebuilt_connection_shard_holds_the_same_state(backend: RedisBackend) -> None:
    shard = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))
    await shard.register("c1", "gw-1", {"user": "u1"})
    await shard.register("c2", "gw-2", False)
    await shard.register("c3", "gw-1")
    await shard.set_metadata("c3", {"a": {"b": 1}})
    await shard.set_metadata("c3", {"a": {"c": 2}}, "deepMerge")
    await shard.register("gone", "gw-2", {"user": "x"})
    await shard.unregister("gone")
    await shard.flush()

    fresh = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))
    assert await fresh.rebuild() == 3
    assert await fresh.locate(["c1", "c2", "c3", "gone"]) == {"c1": "gw-1", "c2": "gw-2", "c3": "gw-1"}
    assert await fresh.get_metadata_many(["c1", "c2", "c3", "gone"]) == {
        "c1": {"user": "u1"},
        "c2": None,
        "c3": {"a": {"b": 1, "c": 2}},
        "gone": None,
    }
    assert await fresh.get_auth("c1") == {"user": "u1"}
    assert await fresh.get_auth("c2") is False
    assert await fresh.get_auth("gone") is None
    assert await fresh.gateway_ids() == ["gw-1", "gw-2"]
    assert sorted(cid for cid, _ in await fresh.connections()) == ["c1", "c2", "c3"]
    # A dead gateway is dropped from the rebuilt shard and from Redis.
    assert sorted(await fresh.drop_gateway("gw-1")) == ["c1", "c3"]
    again = ConnectionShard(ALL, RedisConnectionStore(backend, ALL))
    assert await again.rebuild() == 1
    assert await again.locate(["c1", "c2", "c3"]) == {"c2": "gw-2"}
