"""Built-in commands of the connection owners, by name suffix (docs/protocol.md#built-in-commands)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ...protocol import names
from ...protocol.payloads import ConnectionIdPayload, SetMetadataPayload, parse_payload
from ..policy import forbidden
from ..services import CommandContext

__all__ = ["COMMANDS"]


async def noop(ctx: CommandContext) -> bool:
    """``noop``: liveness probe of the browser clients."""
    return True


async def get_connection_metadata(ctx: CommandContext) -> dict[str, Any]:
    """``get-connection-metadata {connectionId}`` -> ``{metadata}``, within the read policy."""
    target = parse_payload(ConnectionIdPayload, ctx.command, ctx.payload).connection_id
    if not await ctx.server.may_read_metadata(ctx.connection.id, target):
        raise forbidden(f'Not allowed to read the metadata of connection "{target}"')
    return {"metadata": await ctx.server.connection_manager.get_metadata(target)}


async def get_my_connection_metadata(ctx: CommandContext) -> dict[str, Any]:
    """``get-my-connection-metadata`` -> ``{metadata}``."""
    return {"metadata": await ctx.server.connection_manager.get_metadata(ctx.connection.id)}


async def set_my_connection_metadata(ctx: CommandContext) -> dict[str, Any]:
    """``set-my-connection-metadata {metadata, options?: {strategy?}}`` -> ``{success: true}``."""
    request = parse_payload(SetMetadataPayload, ctx.command, ctx.payload)
    if not ctx.server.settings.client_metadata_writes:
        raise forbidden("Clients may not set connection metadata on this server")
    await ctx.server.connection_manager.set_metadata(
        ctx.connection.id, request.metadata, request.options.strategy
    )
    return {"success": True}


COMMANDS: Mapping[str, Callable[[CommandContext], Awaitable[Any]]] = {
    names.NOOP: noop,
    names.GET_CONNECTION_METADATA: get_connection_metadata,
    names.GET_MY_CONNECTION_METADATA: get_my_connection_metadata,
    names.SET_MY_CONNECTION_METADATA: set_my_connection_metadata,
}
"""Handlers by built-in suffix; the app exposes each under both dialect prefixes."""
