"""WebSocket close codes the gateway uses, and what each tells a client (docs/protocol.md)."""

from __future__ import annotations

__all__ = ["GOING_AWAY", "INTERNAL_ERROR", "MESSAGE_TOO_BIG", "PING_TIMEOUT", "SLOW_CONSUMER"]

GOING_AWAY = 1001
"""The server is shutting down; reconnect (elsewhere)."""
MESSAGE_TOO_BIG = 1009
"""An inbound message exceeded ``max_frame_bytes`` (sent by the WebSocket layer)."""
INTERNAL_ERROR = 1011
"""The connection could not be registered (e.g. Redis unreachable); reconnect later."""
SLOW_CONSUMER = 1013
"""The client did not read fast enough and its send buffer hit ``max_send_buffer_bytes``. The TCP
connection is dropped at once (a close frame could not get through), so the client sees 1006."""
PING_TIMEOUT = 4000
"""The client missed more than ``max_missed_pongs`` pings."""
