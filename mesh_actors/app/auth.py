"""Connection authentication at the WebSocket upgrade (docs/protocol.md#authentication).

``authenticate_connection(request)`` runs before the upgrade is accepted. It returns the
connection's auth data (accepted), ``None`` (rejected with 401), or raises
:class:`AuthenticationError` to choose the status and message (e.g. 403 "Forbidden"). Its result
is kept in a server-only slot (``connection.auth``) that clients cannot overwrite, and, when truthy,
also becomes the initial client-visible metadata as in the reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuthenticationError", "Authenticator", "UpgradeRequest", "rejection_of"]


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """What an authenticator sees of the HTTP upgrade request."""

    path: str
    """Request path without the query string, e.g. ``/``."""
    query: Mapping[str, str]
    """Query-string parameters (first value of each name), e.g. ``{"token": "..."}``."""
    headers: Mapping[str, str] = field(repr=False)
    """Request headers, case-insensitive (``headers["authorization"]``)."""
    remote_address: Any = None
    """``(host, port)`` of the peer, when known."""


class AuthenticationError(Exception):
    """Reject the upgrade with an HTTP ``status`` (4xx/5xx) and a ``message`` sent as the body."""

    def __init__(self, status: int = 401, message: str = "Unauthorized") -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"AuthenticationError status must be 4xx or 5xx, not {status}")
        super().__init__(message)
        self.status = status
        self.message = message


Authenticator = Callable[[UpgradeRequest], Any | Awaitable[Any]]


def rejection_of(error: Exception) -> tuple[int, str]:
    """HTTP status and body for an exception raised by an authenticator.

    Only :class:`AuthenticationError` chooses its status and message; any other exception is a
    plain 401 "Unauthorized" so internal error texts never reach the client
    (docs/security.md#authentication-errors).
    """
    if isinstance(error, AuthenticationError):
        return error.status, error.message
    return 401, "Unauthorized"
