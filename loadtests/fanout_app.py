"""The server under test of ``loadtests/fanout.py``: one ``publish`` command that fans out to a room.

Run it with ``python -m mesh_actors serve loadtests/fanout_app.py:server --runtime inline|ray``.
Subscribers join a room with the built-in ``mesh/join-room``; a publisher sends
``publish {roomName, payload}``, and every member receives ``room-message`` with ``payload``
unchanged (the load script puts its send timestamp and a sequence number there). Nothing else runs
per message, so the measured cost is the framework's fan-out path, not the app's.
"""

from __future__ import annotations

from mesh_actors import CodeError, Context, MeshServer

server = MeshServer()


@server.command("publish")
async def publish(ctx: Context) -> bool:
    """Broadcast ``payload`` to the members of ``roomName`` as ``room-message``; returns True."""
    body = ctx.payload
    room = body.get("roomName") if isinstance(body, dict) else None
    if not isinstance(room, str):
        raise CodeError("roomName must be a string", "EINVALID", "ValidationError")
    await ctx.server.broadcast_room(room, "room-message", body.get("payload"))
    return True
