"""The Redis key layout (docs/design.md#redis-key-layout), under a configurable prefix (default ``mesh:``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout"]


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Builds every Redis key the server uses; one instance per server, shared by all actors."""

    prefix: str = "mesh:"

    @property
    def connections(self) -> str:
        """HASH connection id -> gateway (instance) id."""
        return f"{self.prefix}connections"

    def gateway_connections(self, gateway_id: str) -> str:
        """SET of the connection ids of one gateway."""
        return f"{self.prefix}connections:{gateway_id}"

    @property
    def connection_meta(self) -> str:
        """HASH connection id -> JSON metadata (client visible)."""
        return f"{self.prefix}connection-meta"

    @property
    def connection_auth(self) -> str:
        """HASH connection id -> JSON auth data (server-only; not in the reference, see docs/security.md)."""
        return f"{self.prefix}connection-auth"

    def connection_rooms(self, connection_id: str) -> str:
        """SET of the rooms of one connection."""
        return f"{self.prefix}connection:{connection_id}:rooms"

    def room(self, room: str) -> str:
        """SET of the member connection ids of a room."""
        return f"{self.prefix}room:{room}"

    def room_metadata(self, room: str) -> str:
        """HASH with field ``data`` -> JSON room metadata."""
        return f"{self.prefix}roommeta:{room}"

    @property
    def room_pattern(self) -> str:
        """SCAN pattern of every room set (room names are matched literally: see :meth:`room_of`)."""
        return f"{self.prefix}room:*"

    @property
    def room_metadata_pattern(self) -> str:
        """SCAN pattern of every room metadata hash."""
        return f"{self.prefix}roommeta:*"

    def room_of(self, key: str) -> str:
        """The room name of a room set key."""
        return key[len(self.prefix) + len("room:") :]

    def room_of_metadata(self, key: str) -> str:
        """The room name of a room metadata key."""
        return key[len(self.prefix) + len("roommeta:") :]
