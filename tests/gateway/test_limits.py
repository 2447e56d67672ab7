"""Bounded resources: frame size, per-connection send buffer, commands in flight."""

from __future__ import annotations

import asyncio
from typing import Any

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


def echo(server: MeshServer) -> None:
    server.expose_command("echo", lambda ctx: ctx.payload)


async def test_oversize_frame_closes_only_that_connection_with_1009(make_server: ServerFactory) -> None:
    server = await make_server(setup=echo, max_frame_bytes=4096)
    async with raw_client(url_of(server)) as big, raw_client(url_of(server)) as bystander:
        await big.send({"id": 1, "command": "echo", "payload": "x" * 5000})
        assert await big.closed() == 1009
        assert await bystander.call("echo", "fine") == "fine"
    async with raw_client(url_of(server)) as fresh:  # the gateway still accepts
        assert await fresh.call("echo", "x" * 4000) == "x" * 4000


async def test_slow_consumer_is_closed_instead_of_buffering_without_limit(make_server: ServerFactory) -> None:
    server = await make_server(setup=echo, max_send_buffer_bytes=64 * 1024)
    dropped = asyncio.Event()
    server.on_disconnection(lambda connection: dropped.set())
    async with raw_client(url_of(server)) as slow:
        await slow.call("mesh/join-room", {"roomName": "firehose"})
        slow.ws.transport.pause_reading()  # from now on this client reads nothing: TCP backs up
        chunk = "y" * 60_000
        gateway = server.local_gateway
        assert gateway is not None
        for _ in range(2000):
            await server.broadcast_room("firehose", "data", chunk)
            if dropped.is_set() or not gateway.connections:
                break
            await asyncio.sleep(0)  # let the loop write to the socket
        await asyncio.wait_for(dropped.wait(), 10)
        assert server.connection_count == 0
        assert await server.get_room_members("firehose") == []
        slow.ws.transport.resume_reading()  # let the client see the dropped connection
        assert await slow.closed() == 1006


async def test_commands_beyond_the_inflight_limit_wait_instead_of_failing(make_server: ServerFactory) -> None:
    release = asyncio.Event()
    saturated = asyncio.Event()
    running = 0
    peak = 0

    def setup(server: MeshServer) -> None:
        @server.command("hold")
        async def hold(ctx: Any) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 3:
                saturated.set()
            await release.wait()
            running -= 1
            return ctx.payload

    server = await make_server(setup=setup, max_inflight_commands=3)
    async with raw_client(url_of(server)) as c:
        for i in range(10):
            await c.send({"id": i, "command": "hold", "payload": i})
        await asyncio.wait_for(saturated.wait(), 5)
        release.set()
        answers = [await c.wait_for(lambda f, i=i: f.get("id") == i) for i in range(10)]
    assert [a["payload"] for a in answers] == list(range(10))
    assert peak == 3


async def test_queued_commands_that_finish_at_once_all_run(make_server: ServerFactory) -> None:
    """Commands queued beyond the limit are started as slots free up, including those that finish
    without waiting (they take no slot, so several start at once)."""
    release = asyncio.Event()

    def setup(server: MeshServer) -> None:
        @server.command("hold")
        async def hold(ctx: Any) -> int:
            await release.wait()
            return ctx.payload

        server.expose_command("now", lambda ctx: ctx.payload)

    server = await make_server(setup=setup, max_inflight_commands=2)
    async with raw_client(url_of(server)) as c:
        await c.send({"id": 0, "command": "hold", "payload": 0})
        await c.send({"id": 1, "command": "hold", "payload": 1})
        for i in range(2, 8):
            await c.send({"id": i, "command": "now", "payload": i})
        release.set()
        answers = {}
        for _ in range(8):
            frame = await c.wait_for(lambda f: f.get("id") in range(8))
            answers[frame["id"]] = frame["payload"]
    assert answers == {i: i for i in range(8)}  # a queue that stalled would time out instead


async def test_a_context_variable_set_in_a_handler_survives_its_awaits(make_server: ServerFactory) -> None:
    """What a handler sets in a ContextVar stays within its own command, across its awaits."""
    import contextvars

    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")

    def setup(server: MeshServer) -> None:
        @server.command("remember")
        async def remember(ctx: Any) -> list[str]:
            before = current.get()
            current.set(ctx.payload)
            await asyncio.sleep(0)
            return [before, current.get()]

    server = await make_server(setup=setup)
    async with raw_client(url_of(server)) as c:
        assert await c.call("remember", "a") == ["unset", "a"]
        assert await c.call("remember", "b") == ["unset", "b"]  # nothing leaked from the first
