"""Exceptions raised by the client.

All of them are :class:`~mesh_actors.protocol.CodeError` subclasses, so they carry the same
``code`` / ``name`` pair as a server error payload (docs/protocol.md#client-errors):
``ETIMEOUT``/``TimeoutError`` and ``ECONNECTION``/``ConnectionError`` are the client-side
codes of the reference client. They also derive from the matching built-in exceptions, so
``except TimeoutError`` and ``except ConnectionError`` work as a Python programmer expects.
"""

from __future__ import annotations

from typing import Any

from ..protocol.errors import CodeError, ErrorCode

__all__ = [
    "MeshClientError",
    "MeshCommandError",
    "MeshConnectionError",
    "MeshTimeoutError",
]


class MeshClientError(CodeError):
    """Base class of every error raised by :class:`~mesh_actors.client.MeshClient`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, name={self.name!r})"


class MeshCommandError(MeshClientError):
    """The server answered a command with an error payload ``{"error", "code", "name"}``.

    ``code`` and ``name`` are the server's values; ``payload`` is the raw error object and
    ``command`` the name of the command that failed.
    """

    def __init__(self, command: str, payload: dict[str, Any]) -> None:
        super().__init__(
            str(payload.get("error", "")),
            code=str(payload.get("code", ErrorCode.SERVER)),
            name=str(payload.get("name", "Error")),
        )
        self.command = command
        self.payload = payload


class MeshConnectionError(MeshClientError, ConnectionError):
    """The client is not connected, could not connect, or lost the connection.

    ``status`` is the HTTP status of a rejected WebSocket upgrade (e.g. 401 or 403 from the
    server's ``authenticate_connection``), ``None`` for every other cause.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, code="ECONNECTION", name="ConnectionError")
        self.status = status


class MeshTimeoutError(MeshClientError, TimeoutError):
    """A command got no response in time, or expired in the offline queue."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ETIMEOUT", name="TimeoutError")
