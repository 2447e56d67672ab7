"""The registration of the room owners (docs/adding-a-feature.md)."""

from __future__ import annotations

from ...actors.registry import OwnerKind
from .redis import RedisRoomStore
from .shard import RoomShard

__all__ = ["ROOMS"]

ROOMS: OwnerKind[RoomShard] = OwnerKind(
    name="rooms",
    shards_setting="room_shards",
    actor=RoomShard,
    store=RedisRoomStore,
    # Its stored members are checked against the connection registry, so that one loads first.
    rebuild_after=("connections",),
)
"""Room membership, room metadata and room fan-out, sharded by room name."""
