"""Frames of the data-plane link between actors: a 4-byte length, then a pickled message.

Pure (no I/O). Messages are tuples of plain values (str, bytes, tuples, JSON values), so pickle is
the fastest faithful encoding; the link is internal to a deployment and authenticated with a shared
token before any message is unpickled.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

__all__ = ["MAX_MESSAGE_BYTES", "FrameReader", "FramingError", "encode"]

_LENGTH = struct.Struct("!I")
MAX_MESSAGE_BYTES = 256 << 20
"""Largest message a link accepts (256 MiB); a bigger length means a corrupt or hostile stream."""


class FramingError(Exception):
    """The byte stream is not a sequence of valid frames."""


def encode(message: Any) -> bytes:
    """One frame carrying ``message``."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Accumulates received bytes and returns the complete messages they contain."""

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
                raise FramingError(f"frame of {length} bytes exceeds the limit")
            if end - offset - 4 < length:
                break
            start = offset + 4
            messages.append(pickle.loads(memoryview(buffer)[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return messages
