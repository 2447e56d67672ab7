"""The server under test of ``loadtests/locustfile.py``: an ``echo`` command and a room chat.

Run it with ``python -m mesh_actors serve loadtests/locust_app.py:server --runtime inline|ray``
(``loadtests/run_locust.py`` does). The locust users need only two app commands, the rest are
built-ins (``mesh/join-room``, ``mesh/leave-room``, ``mesh/set-my-connection-metadata``, ...):

- ``echo`` returns its payload: the closed-loop command scenario measures the command path alone.
- ``chat-send {roomName, text, t}`` pushes ``room-message {room, text, t, sender}`` to every member
  of the room, the sender included when it is a member, and answers ``{"delivered": n}``, ``n``
  being what ``broadcast_room`` returns: the frames actually written to members' connections at
  broadcast time. The load test sums these counts into its *expected* deliveries, so the
  completeness check compares the server's own count with what the clients received.
"""

from __future__ import annotations

from typing import Any

from mesh_actors import CodeError, Context, MeshServer

server = MeshServer()

MAX_TEXT = 2000
"""Longest ``text`` a ``chat-send`` accepts (characters)."""


@server.command("echo")
async def echo(ctx: Context) -> Any:
    """Send the payload back unchanged."""
    return ctx.payload


@server.command("chat-send")
async def chat_send(ctx: Context) -> dict[str, int]:
    """Broadcast ``{room, text, t, sender}`` to ``roomName`` as ``room-message``; answer the count.

    ``t`` is the sender's clock (ms since the epoch) copied verbatim, so receivers on the same host
    can compute the delivery latency. No membership check: the load test always sends to a room it
    joined, and skipping the check keeps the measured cost the framework's fan-out path.
    """
    body = ctx.payload if isinstance(ctx.payload, dict) else {}
    room, text, sent_at = body.get("roomName"), body.get("text"), body.get("t")
    if not isinstance(room, str) or not isinstance(text, str) or len(text) > MAX_TEXT:
        raise CodeError(
            f"roomName must be a string and text a string of at most {MAX_TEXT} characters", "EINVALID"
        )
    if not isinstance(sent_at, int | float):
        raise CodeError("t must be a number (ms since the epoch)", "EINVALID")
    message = {"room": room, "text": text, "t": sent_at, "sender": ctx.connection.id}
    delivered = await ctx.server.broadcast_room(room, "room-message", message)
    return {"delivered": delivered}
