"""Link messages on the wire: a 4-byte big-endian length, then the message.

Pure (no I/O). A link opens with two *raw* messages (bytes, not pickled): the deployment's shared
token, then the name of the actor it wants. After that every message is a pickled tuple of plain
values (str, bytes, tuples, numbers, JSON values), so pickle is the fastest faithful encoding;
nothing is unpickled from a peer before its token matched (docs/ray.md#the-data-plane).

Pickled messages, by their first element:

- ``(CALL, seq, method, args)`` or ``(CALL, seq, method, args, kwargs)``: run ``method``, reply;
- ``(TELL, method, args)`` or ``(TELL, method, args, kwargs)``: run ``method``, no reply;
- ``(REPLY, seq, ok, value)``: the result (``ok``) or the error of call ``seq``.

``kwargs`` is sent only when there are some, which keeps the hot path's messages small.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

__all__ = [
    "CALL",
    "MAX_MESSAGE_BYTES",
    "MAX_OPENING_BYTES",
    "REPLY",
    "TELL",
    "CodecError",
    "MessageReader",
    "encode",
    "encode_opening",
    "take_opening",
]

CALL, TELL, REPLY = 1, 2, 3
"""The kinds of link message (their first element)."""

_LENGTH = struct.Struct("!I")
MAX_MESSAGE_BYTES = 256 << 20
"""Largest message a link accepts (256 MiB); a bigger length means a corrupt or hostile stream."""
MAX_OPENING_BYTES = 1024
"""Largest token or actor name a link may open with."""


class CodecError(Exception):
    """The byte stream is not a sequence of valid link messages."""


def encode(message: Any) -> bytes:
    """One link message carrying ``message`` (pickled)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def encode_opening(token: bytes, name: str) -> bytes:
    """The two raw messages a link starts with: the token, then the name of the actor it wants."""
    encoded = name.encode()
    return _LENGTH.pack(len(token)) + token + _LENGTH.pack(len(encoded)) + encoded


def take_opening(pending: bytearray) -> bytes | None:
    """Remove the next raw opening message from ``pending`` and return it; None until complete."""
    if len(pending) < 4:
        return None
    (length,) = _LENGTH.unpack_from(pending)
    if length > MAX_OPENING_BYTES:
        raise CodecError(f"opening message of {length} bytes")
    if len(pending) < 4 + length:
        return None
    message = bytes(pending[4 : 4 + length])
    del pending[: 4 + length]
    return message


class MessageReader:
    """Accumulates received bytes and returns the complete (unpickled) messages they contain."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every message completed by it, in order."""
        buffer = self._buffer
        buffer += data
        messages: list[Any] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length > MAX_MESSAGE_BYTES:
                raise CodecError(f"link message of {length} bytes exceeds the limit")
            if end - offset - 4 < length:
                break
            start = offset + 4
            messages.append(pickle.loads(memoryview(buffer)[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return messages
