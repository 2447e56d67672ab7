"""Error payloads: how a failed command is reported on the wire (docs/protocol.md#error-payloads).

A failing request gets a normal response whose payload is ``{"error", "code", "name"}``. The stock
clients resolve (not reject) with that object, so the shape and values are part of the protocol.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "CodeError",
    "ErrorCode",
    "command_not_found",
    "error_payload",
    "invalid_payload",
    "is_error_payload",
    "unavailable",
]


class ErrorCode(enum.StrEnum):
    """Every ``code`` this server puts in an error payload (docs/protocol.md#error-payloads).

    User code may raise :class:`CodeError` with any code of its own; these are the server's.
    """

    SERVER = "ESERVER"
    """An unexpected failure in a handler, or a response that is not JSON."""
    NOT_FOUND = "ENOTFOUND"
    """Unknown command name."""
    INVALID = "EINVALID"
    """A malformed frame, a bad built-in payload, a value that is not JSON."""
    FORBIDDEN = "EFORBIDDEN"
    """Refused by the server's policy (guards, read and write settings)."""
    NO_CONNECTION = "ENOCONN"
    """A server call named a connection that does not exist (any more)."""
    UNAVAILABLE = "EUNAVAILABLE"
    """An actor or Redis did not answer in time; the operation may or may not have happened."""
    TIMEOUT = "ETIMEOUT"
    """An actor call got no answer within its timeout."""
    CANCELLED = "ECANCELLED"
    """An actor call was cancelled before it finished."""


class CodeError(Exception):
    """An error with an explicit wire ``code`` and ``name``, sent to the client as is.

    Raise it from a command handler or middleware to control the error payload exactly::

        raise CodeError("Not allowed", code="EFORBIDDEN", name="AuthError")
    """

    def __init__(self, message: str, code: str = ErrorCode.SERVER, name: str = "CodeError") -> None:
        super().__init__(message)
        self.message = message
        self.code = str(code)
        self.name = name

    def __reduce__(self) -> tuple[type[CodeError], tuple[str, str, str]]:
        # Keep code and name when the error crosses a process boundary (pickle, Ray).
        return (type(self), (self.message, self.code, self.name))

    def to_payload(self) -> dict[str, str]:
        """The wire payload for this error."""
        return {"error": self.message, "code": self.code, "name": self.name}

    def __repr__(self) -> str:
        return f"CodeError({self.message!r}, code={self.code!r}, name={self.name!r})"


def error_payload(exc: BaseException) -> dict[str, str]:
    """Map an exception raised by a handler or middleware to its wire payload.

    ``CodeError`` keeps its fields. Any other exception becomes ``code`` = its string ``code``
    attribute or ``"ESERVER"``, ``name`` = its class name, except that a plain ``Exception`` is
    named ``"Error"`` as a JavaScript ``Error`` would be (the reference tests compare exactly).
    """
    if isinstance(exc, CodeError):
        return exc.to_payload()
    code = getattr(exc, "code", None)
    name = "Error" if type(exc) is Exception else type(exc).__name__
    return {
        "error": str(exc),
        "code": code if isinstance(code, str) and code else str(ErrorCode.SERVER),
        "name": name,
    }


def command_not_found(command: object) -> dict[str, str]:
    """The payload for an unknown command name (exact text of the reference)."""
    return {"error": f'Command "{command}" not found', "code": ErrorCode.NOT_FOUND, "name": "CommandError"}


def invalid_payload(command: str, details: str) -> dict[str, str]:
    """The payload for a built-in command whose payload failed validation."""
    return {
        "error": f'Invalid payload for "{command}": {details}',
        "code": ErrorCode.INVALID,
        "name": "ValidationError",
    }


def is_error_payload(payload: Any) -> bool:
    """True if a response payload has the error shape (``error`` and ``code`` keys)."""
    return isinstance(payload, dict) and "error" in payload and "code" in payload


def unavailable(detail: str, name: str = "UnavailableError") -> CodeError:
    """The error of an operation whose actor or store did not answer in time.

    The operation may or may not have happened; callers that know it is safe retry (see
    ``mesh_actors.actors.ref.retry_safe``). ``name`` says which part failed: ``UnavailableError``
    for an actor, ``StorageError`` for Redis.
    """
    return CodeError(detail, ErrorCode.UNAVAILABLE, name)
