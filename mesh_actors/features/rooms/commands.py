"""Built-in commands of the room owners, by name suffix (docs/protocol.md#built-in-commands)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ...protocol import names
from ...protocol.payloads import RoomPayload, parse_payload
from ..policy import forbidden
from ..services import CommandContext

__all__ = ["COMMANDS"]


async def join_room(ctx: CommandContext) -> dict[str, Any]:
    """``join-room {roomName}`` -> ``{success, present: [{id, metadata}]}``."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    server = ctx.server
    if not await server.may_use_room(ctx.connection, room):
        return {"success": False, "present": []}
    await server.room_manager.add(room, ctx.connection.id, gateway_id=ctx.connection.gateway_id)
    return {"success": True, "present": await server.room_manager.get_members_with_metadata(room)}


async def leave_room(ctx: CommandContext) -> dict[str, Any]:
    """``leave-room {roomName}`` -> ``{success: true}``."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    await ctx.server.room_manager.remove(room, ctx.connection.id)
    return {"success": True}


async def get_room_metadata(ctx: CommandContext) -> dict[str, Any]:
    """``get-room-metadata {roomName}`` -> ``{metadata}`` (room guards apply)."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    if not await ctx.server.may_use_room(ctx.connection, room):
        raise forbidden(f'Not allowed to read the metadata of room "{room}"')
    return {"metadata": await ctx.server.room_manager.get_metadata(room)}


COMMANDS: Mapping[str, Callable[[CommandContext], Awaitable[Any]]] = {
    names.JOIN_ROOM: join_room,
    names.LEAVE_ROOM: leave_room,
    names.GET_ROOM_METADATA: get_room_metadata,
}
"""Handlers by built-in suffix; the app exposes each under both dialect prefixes."""
