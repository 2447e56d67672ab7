"""Running one command: lookup, middleware chain, handler, response.

See docs/protocol.md#requests-and-responses, docs/protocol.md#commands-and-middleware.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..app import Api, Context
from ..app.calls import call_user
from ..protocol.errors import CodeError, ErrorCode, command_not_found, error_payload
from ..protocol.messages import MISSING, CommandRequest, InvalidRequest, encode_response

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["answer_invalid", "run_command"]

logger = logging.getLogger(__name__)


async def run_command(api: Api, connection: Connection, request: CommandRequest) -> None:
    """Run ``request`` for ``connection`` and send the response (an error payload on failure).

    Unknown commands are answered ``ENOTFOUND`` without running middleware, as in the reference.
    """
    commands = api.app.commands
    entry = commands.lookup(request.command)
    if entry is None:
        result: Any = command_not_found(request.command)
    else:
        handler, own_middleware = entry
        ctx = Context(api, connection, request.command, request.payload)
        try:
            for middleware in commands.global_middleware:
                await call_user(middleware, ctx)
            for middleware in own_middleware:
                await call_user(middleware, ctx)
            result = await call_user(handler, ctx)
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
            {
                "error": f"Response is not JSON-serializable: {error}",
                "code": ErrorCode.SERVER,
                "name": "TypeError",
            },
        )
    connection.answer(frame)


def answer_invalid(connection: Connection, request: InvalidRequest) -> None:
    """Answer a frame whose ``command`` is not a string with an error payload."""
    connection.send_json(
        encode_response(
            request.id,
            request.command,
            {"error": f"Invalid frame: {request.reason}", "code": ErrorCode.INVALID, "name": "ProtocolError"},
        )
    )
