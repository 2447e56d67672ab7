"""Built-in commands of the foundation slice, registered under both ``mesh/`` and ``rt/`` (spec §1.8).

They go through the normal registry: global middleware runs for them, and a user command with the
same name replaces them. Payloads are validated by the protocol models; a bad payload is answered
with an ``EINVALID`` error payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol import names
from ..protocol.dialect import Dialect
from ..protocol.errors import CodeError
from ..protocol.payloads import ConnectionIdPayload, RoomPayload, SetMetadataPayload, parse_payload
from .context import Context

if TYPE_CHECKING:
    from .mesh_server import MeshServer

__all__ = ["forbidden", "register_builtins"]


def forbidden(message: str) -> CodeError:
    """The error for a request the server's policy refuses."""
    return CodeError(message, "EFORBIDDEN", "AuthorizationError")


async def noop(ctx: Context) -> bool:
    """``noop``: liveness probe of the browser clients."""
    return True


async def join_room(ctx: Context) -> dict[str, Any]:
    """``join-room {roomName}`` -> ``{success, present: [{id, metadata}]}``."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    server = ctx.server
    if not await server.may_use_room(ctx.connection, room):
        return {"success": False, "present": []}
    await server.room_manager.add(room, ctx.connection.id, gateway_id=ctx.connection.gateway_id)
    return {"success": True, "present": await server.room_manager.get_members_with_metadata(room)}


async def leave_room(ctx: Context) -> dict[str, Any]:
    """``leave-room {roomName}`` -> ``{success: true}``."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    await ctx.server.room_manager.remove(room, ctx.connection.id)
    return {"success": True}


async def get_connection_metadata(ctx: Context) -> dict[str, Any]:
    """``get-connection-metadata {connectionId}`` -> ``{metadata}``, within the read policy."""
    target = parse_payload(ConnectionIdPayload, ctx.command, ctx.payload).connection_id
    if not await ctx.server.may_read_metadata(ctx.connection.id, target):
        raise forbidden(f'Not allowed to read the metadata of connection "{target}"')
    return {"metadata": await ctx.server.connection_manager.get_metadata(target)}


async def get_my_connection_metadata(ctx: Context) -> dict[str, Any]:
    """``get-my-connection-metadata`` -> ``{metadata}``."""
    return {"metadata": await ctx.server.connection_manager.get_metadata(ctx.connection.id)}


async def set_my_connection_metadata(ctx: Context) -> dict[str, Any]:
    """``set-my-connection-metadata {metadata, options?: {strategy?}}`` -> ``{success: true}``."""
    request = parse_payload(SetMetadataPayload, ctx.command, ctx.payload)
    if not ctx.server.settings.client_metadata_writes:
        raise forbidden("Clients may not set connection metadata on this server")
    await ctx.server.connection_manager.set_metadata(
        ctx.connection.id, request.metadata, request.options.strategy
    )
    return {"success": True}


async def get_room_metadata(ctx: Context) -> dict[str, Any]:
    """``get-room-metadata {roomName}`` -> ``{metadata}`` (room guards apply)."""
    room = parse_payload(RoomPayload, ctx.command, ctx.payload).room_name
    if not await ctx.server.may_use_room(ctx.connection, room):
        raise forbidden(f'Not allowed to read the metadata of room "{room}"')
    return {"metadata": await ctx.server.room_manager.get_metadata(room)}


_HANDLERS = {
    names.NOOP: noop,
    names.JOIN_ROOM: join_room,
    names.LEAVE_ROOM: leave_room,
    names.GET_CONNECTION_METADATA: get_connection_metadata,
    names.GET_MY_CONNECTION_METADATA: get_my_connection_metadata,
    names.SET_MY_CONNECTION_METADATA: set_my_connection_metadata,
    names.GET_ROOM_METADATA: get_room_metadata,
}


def register_builtins(server: MeshServer) -> None:
    """Expose every built-in of this slice under both dialect prefixes."""
    for suffix, handler in _HANDLERS.items():
        for dialect in Dialect:
            server.expose_command(dialect.name_of(suffix), handler)
