"""Running one command: lookup, middleware chain, handler, response (spec §1.2, §1.3, §2.2)."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from ..protocol.errors import CodeError, command_not_found, error_payload
from ..protocol.frames import MISSING, CommandRequest, InvalidRequest, encode_response
from ..server.context import Context

if TYPE_CHECKING:
    from ..server.mesh_server import MeshServer
    from .connection import Connection

__all__ = ["answer_invalid", "run_command"]

logger = logging.getLogger(__name__)


async def _call(function: Any, ctx: Context) -> Any:
    result = function(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_command(server: MeshServer, connection: Connection, request: CommandRequest) -> None:
    """Run ``request`` for ``connection`` and send the response (an error payload on failure).

    Unknown commands are answered ``ENOTFOUND`` without running middleware, as in the reference.
    """
    entry = server.commands.lookup(request.command)
    if entry is None:
        result: Any = command_not_found(request.command)
    else:
        handler, own_middleware = entry
        ctx = Context(server, connection, request.command, request.payload)
        try:
            for middleware in server.commands.global_middleware:
                await _call(middleware, ctx)
            for middleware in own_middleware:
                await _call(middleware, ctx)
            result = await _call(handler, ctx)
            if result is None:
                result = MISSING  # a handler that returns nothing: no payload key, like undefined
        except CodeError as error:
            result = error.to_payload()
        except Exception as error:
            logger.debug("command %r failed", request.command, exc_info=True)
            result = error_payload(error)
    try:
        frame = encode_response(request.id, request.command, result)
    except TypeError as error:
        logger.warning("command %r returned a value that is not JSON: %s", request.command, error)
        frame = encode_response(
            request.id,
            request.command,
            {"error": f"Response is not JSON-serializable: {error}", "code": "ESERVER", "name": "TypeError"},
        )
    connection.answer(frame)


def answer_invalid(connection: Connection, request: InvalidRequest) -> None:
    """Answer a frame whose ``command`` is not a string with an error payload."""
    connection.send_json(
        encode_response(
            request.id,
            request.command,
            {"error": f"Invalid frame: {request.reason}", "code": "EINVALID", "name": "ProtocolError"},
        )
    )
