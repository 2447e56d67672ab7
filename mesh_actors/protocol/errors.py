"""Error payloads: how a failed command is reported on the wire (spec §1.3).

A failing request gets a normal response whose payload is ``{"error", "code", "name"}``. The stock
clients resolve (not reject) with that object, so the shape and values are part of the protocol.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CodeError",
    "command_not_found",
    "error_payload",
    "invalid_payload",
    "is_error_payload",
]


class CodeError(Exception):
    """An error with an explicit wire ``code`` and ``name``, sent to the client as is.

    Raise it from a command handler or middleware to control the error payload exactly::

        raise CodeError("Not allowed", code="EFORBIDDEN", name="AuthError")
    """

    def __init__(self, message: str, code: str = "ESERVER", name: str = "CodeError") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
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
        "code": code if isinstance(code, str) and code else "ESERVER",
        "name": name,
    }


def command_not_found(command: object) -> dict[str, str]:
    """The payload for an unknown command name (exact text of the reference)."""
    return {"error": f'Command "{command}" not found', "code": "ENOTFOUND", "name": "CommandError"}


def invalid_payload(command: str, details: str) -> dict[str, str]:
    """The payload for a built-in command whose payload failed validation."""
    return {
        "error": f'Invalid payload for "{command}": {details}',
        "code": "EINVALID",
        "name": "ValidationError",
    }


def is_error_payload(payload: Any) -> bool:
    """True if a response payload has the error shape (``error`` and ``code`` keys)."""
    return isinstance(payload, dict) and "error" in payload and "code" in payload
