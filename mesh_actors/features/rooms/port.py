"""The storage port of the room owners: what a RoomShard asks of its store.

Membership is written twice in the reference's key layout, as the room's member set and as the
member's room set; both belong to the room owner, so an adapter writes them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["RoomStore", "StoredRooms"]


@dataclass(frozen=True, slots=True)
class StoredRooms:
    """One RoomShard's slice as the store holds it."""

    members: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """room -> ``(connection id, gateway id)`` of each member whose connection is still registered."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """room -> metadata, for the rooms that have some."""


class RoomStore(Protocol):
    """Durable copy of one RoomShard's slice."""

    async def add_member(self, room: str, connection_id: str) -> None:
        """Record a membership."""
        ...

    async def remove_members(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Forget ``(room, connection id)`` memberships."""
        ...

    async def clear(self, room: str, members: Sequence[str], *, metadata: bool) -> None:
        """Forget every membership of ``room`` (the given members), and its metadata if asked."""
        ...

    async def set_metadata(self, room: str, metadata: bytes) -> None:
        """Store a room's JSON-encoded metadata."""
        ...

    async def load(self) -> StoredRooms:
        """This shard's rooms. Members whose connection is no longer registered are left out and
        removed from the store, never resurrected."""
        ...

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes; False if ``timeout`` elapsed first."""
        ...
