"""The mesh-actors app the harness loads: ``echo`` and ``publish`` and nothing else.

``mesh-actors bench`` serves it as ``python -m mesh_actors serve mesh_actors.bench.app:server``.
Clients ``echo`` for the round-trip scenario; for fan-out, subscribers join a room with the built-in
``mesh/join-room`` and a publisher sends ``publish {roomName, payload}``, which every member gets as
``room-message`` with ``payload`` unchanged (the generator puts a send timestamp and a sequence
number there). Nothing else runs per message, so what is measured is the framework's command and
fan-out paths, not an application's work.
"""

from __future__ import annotations

from typing import Any

from mesh_actors import CodeError, Context, MeshServer

server = MeshServer()


@server.command("echo")
async def echo(ctx: Context) -> Any:
    """Send the payload back."""
    return ctx.payload


@server.command("publish")
async def publish(ctx: Context) -> bool:
    """Broadcast ``payload`` to the members of ``roomName`` as ``room-message``; returns True."""
    body = ctx.payload
    room = body.get("roomName") if isinstance(body, dict) else None
    if not isinstance(room, str):
        raise CodeError("roomName must be a string", "EINVALID", "ValidationError")
    await ctx.server.broadcast_room(room, "room-message", body.get("payload"))
    return True
