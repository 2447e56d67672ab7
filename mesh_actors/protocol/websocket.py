"""Server-side WebSocket text frames built once and written to many sockets (RFC 6455 §5.2).

A frame from server to client is not masked, so the bytes of one broadcast frame are identical for
every recipient: we build them once and write the same ``bytes`` to each socket instead of letting
the WebSocket library frame the message again per connection (the cost that dominates fan-out).
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_FIN_TEXT = 0x81
_HEADER_7 = struct.Struct("!BB")
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """A complete, unfragmented, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    length = len(payload)
    if length < 126:
        return _HEADER_7.pack(_FIN_TEXT, length) + payload
    if length < 65536:
        return _HEADER_16.pack(_FIN_TEXT, 126, length) + payload
    return _HEADER_64.pack(_FIN_TEXT, 127, length) + payload
