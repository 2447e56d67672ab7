"""Shards rebuild their slice from Redis after a restart (architecture: Redis is the durable truth)."""

from __future__ import annotations

import redis.asyncio as aioredis

from mesh_actors.actors.connection_shard import ConnectionShard
from mesh_actors.actors.room_shard import RoomShard
from mesh_actors.runtime.inline import InlineDirectory
from mesh_actors.store.keys import KeyLayout
from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


async def test_shard_objects_rebuilt_from_redis_hold_the_same_state(redis_url: str, key_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = KeyLayout(key_prefix)
    directory = InlineDirectory()
    try:
        conns = ConnectionShard(0, 1, client, keys)
        rooms = RoomShard(0, 1, client, keys, directory)
        await conns.register("c1", "gw-1", {"user": "u1"})
        await conns.register("c2", "gw-2")
        await conns.set_metadata("c2", {"a": {"b": 1}})
        await conns.set_metadata("c2", {"a": {"c": 2}}, "deepMerge")
        for room, cid, gateway in (("r1", "c1", "gw-1"), ("r1", "c2", "gw-2"), ("r2", "c2", "gw-2")):
            await conns.add_room(cid, room)
            await rooms.join(room, cid, gateway)
        await rooms.set_metadata("r1", {"topic": "t"})
        await rooms.set_metadata("empty-room", {"kept": True})
        await conns.flush()
        await rooms.flush()

        fresh_conns = ConnectionShard(0, 1, client, keys)
        fresh_rooms = RoomShard(0, 1, client, keys, directory)
        assert await fresh_conns.rebuild() == 2
        assert await fresh_rooms.rebuild() == 2
        assert await fresh_conns.locate(["c1", "c2", "c3"]) == {"c1": "gw-1", "c2": "gw-2"}
        assert await fresh_conns.get_metadata_many(["c1", "c2"]) == {
            "c1": {"user": "u1"},
            "c2": {"a": {"b": 1, "c": 2}},
        }
        assert await fresh_conns.get_auth("c1") == {"user": "u1"}
        assert await fresh_conns.rooms_of("c2") == ["r1", "r2"]
        assert sorted(await fresh_rooms.members("r1")) == ["c1", "c2"]
        assert await fresh_rooms.members("r2") == ["c2"]
        assert await fresh_rooms.get_metadata("r1") == {"topic": "t"}
        assert await fresh_rooms.get_metadata("empty-room") == {"kept": True}
        # The fan-out index came back too: a drop of gw-2 removes exactly its members.
        assert sorted(await fresh_rooms.drop_gateway("gw-2")) == [("r1", "c2"), ("r2", "c2")]
        assert await fresh_rooms.members("r1") == ["c1"]
    finally:
        await client.aclose()


async def test_each_shard_rebuilds_only_its_own_slice(redis_url: str, key_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = KeyLayout(key_prefix)
    try:
        writer = ConnectionShard(0, 1, client, keys)  # one shard owning everything writes the state
        ids = [f"conn-{i}" for i in range(20)]
        for cid in ids:
            await writer.register(cid, "gw")
        await writer.flush()
        shards = [ConnectionShard(i, 3, client, keys) for i in range(3)]
        counts = [await shard.rebuild() for shard in shards]
        assert sum(counts) == 20 and all(counts)
        owned = [set(await shard.locate(ids)) for shard in shards]
        assert set().union(*owned) == set(ids)
        assert sum(len(o) for o in owned) == 20  # no connection owned twice
    finally:
        await client.aclose()


async def test_restarted_shards_keep_serving_a_running_server(make_server: ServerFactory) -> None:
    server = await make_server(room_shards=3, connection_shards=3)
    url = url_of(server)
    async with raw_client(url) as a, raw_client(url) as b:
        await a.call("mesh/set-my-connection-metadata", {"metadata": {"name": "a"}})
        await a.call("mesh/join-room", {"roomName": "lobby"})
        await b.call("mesh/join-room", {"roomName": "lobby"})
        await server.room_manager.set_metadata("lobby", {"topic": "before"})

        await server.runtime.restart_shards()

        assert sorted(await server.get_room_members("lobby")) == sorted([a.connection_id, b.connection_id])
        assert await b.call("mesh/get-room-metadata", {"roomName": "lobby"}) == {
            "metadata": {"topic": "before"}
        }
        assert await b.call("mesh/get-connection-metadata", {"connectionId": a.connection_id}) == {
            "metadata": {"name": "a"}
        }
        assert await server.broadcast_room("lobby", "after-restart", 1) == 2
        assert (await a.push("after-restart"))["payload"] == 1
        assert (await b.push("after-restart"))["payload"] == 1
        assert await b.call("mesh/leave-room", {"roomName": "lobby"}) == {"success": True}
        assert await server.get_room_members("lobby") == [a.connection_id]


# A server killed while clients are connected, and its successor on the same Redis, are tested with
# real processes in tests/test_cli.py::test_a_killed_server_leaves_no_ghosts_for_the_next_one.
