"""The error every feature's built-ins raise for a request the server's policy refuses."""

from __future__ import annotations

from ..protocol.errors import CodeError, ErrorCode

__all__ = ["forbidden"]


def forbidden(message: str) -> CodeError:
    """The error for a request the server's policy refuses (docs/security.md)."""
    return CodeError(message, ErrorCode.FORBIDDEN, "AuthorizationError")
