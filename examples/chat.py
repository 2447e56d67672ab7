"""A chat server: rooms, metadata, room broadcasts. Run it with

    mesh-actors serve examples/chat.py:server

and talk to it with ``python examples/chat_client.py`` (or any Mesh / @prsm/realtime client).
"""

from __future__ import annotations

from typing import Any

from mesh_actors import CodeError, Context, MeshServer

server = MeshServer()


@server.command("echo")
async def echo(ctx: Context) -> Any:
    """Send the payload back."""
    return ctx.payload


@server.command("set-status")
async def set_status(ctx: Context) -> dict[str, Any]:
    """Merge ``{"status": ...}`` into the caller's metadata (the seed's example, in Python)."""
    status = (ctx.payload or {}).get("status")
    if not isinstance(status, str):
        raise CodeError("status must be a string", "EINVALID", "ValidationError")
    return await ctx.set_metadata({"status": status}, strategy="merge")


@server.command("update-room-topic")
async def update_room_topic(ctx: Context) -> Any:
    """Update a room's metadata (the seed's other example): ``{"roomName", "topic"}``."""
    payload = ctx.payload or {}
    room, topic = payload.get("roomName"), payload.get("topic")
    if not isinstance(room, str) or not isinstance(topic, str):
        raise CodeError("roomName and topic must be strings", "EINVALID", "ValidationError")
    if not await ctx.server.is_in_room(room, ctx.connection):
        raise CodeError(f'join "{room}" first', "EFORBIDDEN", "AuthorizationError")
    return await ctx.server.room_manager.set_metadata(room, {"topic": topic}, strategy="merge")


@server.command("say")
async def say(ctx: Context) -> bool:
    """Broadcast ``{"roomName", "text"}`` to the room as a ``chat-message`` push."""
    payload = ctx.payload or {}
    room, text = payload.get("roomName"), payload.get("text")
    if not isinstance(room, str) or not isinstance(text, str) or len(text) > 2000:
        raise CodeError("roomName must be a string and text a string of at most 2000 characters", "EINVALID")
    if not await ctx.server.is_in_room(room, ctx.connection):
        raise CodeError(f'join "{room}" first', "EFORBIDDEN", "AuthorizationError")
    metadata = await ctx.get_metadata() or {}
    await ctx.server.broadcast_room(
        room,
        "chat-message",
        {"room": room, "from": ctx.connection.id, "name": metadata.get("name"), "text": text},
    )
    return True


@server.on_connection
async def greet(connection: Any) -> None:
    connection.send("welcome", {"id": connection.id})
