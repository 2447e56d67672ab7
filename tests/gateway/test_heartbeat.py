"""Ping/pong liveness and latency (docs/protocol.md#heartbeat)."""

from __future__ import annotations

import asyncio

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


async def test_silent_client_is_dropped_and_its_rooms_cleaned(make_server: ServerFactory) -> None:
    server = await make_server(ping_interval=0.1, max_missed_pongs=1)
    gone = asyncio.Event()
    server.on_disconnection(lambda connection: gone.set())
    async with raw_client(url_of(server)) as silent, raw_client(url_of(server)) as watcher:
        await silent.call("mesh/join-room", {"roomName": "r"})
        await watcher.call("mesh/join-room", {"roomName": "r"})

        # The watcher answers every ping; the silent client never does.
        async def answer_pings() -> None:
            while True:
                await watcher.wait_for(lambda f: f["command"] == "ping", heartbeat=True)
                await watcher.send({"command": "pong", "payload": {}})

        answering = asyncio.create_task(answer_pings())
        try:
            code = await silent.closed(timeout=5)
            await asyncio.wait_for(gone.wait(), 5)
            assert code == 4000
            assert silent.ws.close_reason == "ping timeout"
            assert await server.get_room_members("r") == [watcher.connection_id]
            assert silent.connection_id not in await server.connection_manager.get_all_connection_ids()
            assert server.connection_count == 1
        finally:
            answering.cancel()


async def test_ping_frames_have_empty_object_payload(make_server: ServerFactory) -> None:
    server = await make_server(ping_interval=0.02, max_missed_pongs=100)
    async with raw_client(url_of(server)) as c:
        ping = await c.wait_for(lambda f: f["command"] == "ping", heartbeat=True)
    assert ping == {"command": "ping", "payload": {}}


async def test_latency_is_zero_first_then_measured(make_server: ServerFactory) -> None:
    server: MeshServer = await make_server(latency_interval=0.02, ping_interval=60)
    async with raw_client(url_of(server)) as c:
        first = await c.wait_for(lambda f: f["command"] == "latency", heartbeat=True)
        assert first == {"command": "latency", "payload": 0.0}
        request = await c.wait_for(lambda f: f["command"] == "latency:request", heartbeat=True)
        assert request == {"command": "latency:request", "payload": {}}
        await c.send({"id": 77, "command": "latency:response", "payload": {}})
        measured = await c.wait_for(lambda f: f["command"] == "latency" and f["payload"] > 0, heartbeat=True)
    assert 0 < measured["payload"] < 5000
    assert not any(frame.get("id") == 77 for frame in c.frames)  # never answered
