"""JSON values as owners keep them: exactly what the store holds, never aliased with a caller's object."""

from __future__ import annotations

from typing import Any

import orjson

from .errors import CodeError, ErrorCode

__all__ = ["dumps", "loads", "normalize"]


def dumps(value: Any) -> bytes:
    """Encode a value for Redis; a value that is not JSON raises ``CodeError`` ``EINVALID``."""
    try:
        return orjson.dumps(value)
    except TypeError as error:
        raise CodeError(
            f"Value is not JSON-serializable: {error}", ErrorCode.INVALID, "ValidationError"
        ) from None


def loads(raw: bytes | str | None) -> Any:
    """Decode a value read from Redis; missing or unreadable data is ``None``."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def normalize(value: Any) -> tuple[Any, bytes]:
    """A private copy of ``value`` as stored (tuples become lists, ...) and its encoding."""
    encoded = dumps(value)
    return orjson.loads(encoded), encoded
