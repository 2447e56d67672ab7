"""Names of built-in commands, pushes and heartbeat frames.

See docs/protocol.md#pushes, docs/protocol.md#built-in-commands.

Built-in names are suffixes; the wire name is the dialect prefix plus the suffix.
"""

from __future__ import annotations

__all__ = [
    "ASSIGN_ID",
    "GET_CONNECTION_METADATA",
    "GET_MY_CONNECTION_METADATA",
    "GET_ROOM_METADATA",
    "JOIN_ROOM",
    "LATENCY",
    "LATENCY_REQUEST",
    "LATENCY_RESPONSE",
    "LEAVE_ROOM",
    "NOOP",
    "PING",
    "PONG",
    "SET_MY_CONNECTION_METADATA",
]

# Pushes without a prefix (identical in both dialects).
PING = "ping"
LATENCY = "latency"
LATENCY_REQUEST = "latency:request"

# Client replies to heartbeat pushes: never dispatched as commands, never answered
# (docs/protocol.md#malformed-input).
PONG = "pong"
LATENCY_RESPONSE = "latency:response"

# Prefixed push.
ASSIGN_ID = "assign-id"

# Built-in commands of the foundation slice (suffixes).
NOOP = "noop"
JOIN_ROOM = "join-room"
LEAVE_ROOM = "leave-room"
GET_CONNECTION_METADATA = "get-connection-metadata"
GET_MY_CONNECTION_METADATA = "get-my-connection-metadata"
SET_MY_CONNECTION_METADATA = "set-my-connection-metadata"
GET_ROOM_METADATA = "get-room-metadata"
