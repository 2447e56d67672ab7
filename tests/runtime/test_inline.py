"""The inline runtime: every shard is an object in the server's process, rebuilt from Redis on a restart."""

from __future__ import annotations

from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


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
