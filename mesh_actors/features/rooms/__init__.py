"""Rooms: membership, room metadata and room fan-out (the RoomShard owners); presence joins here."""

from __future__ import annotations

from .api import RoomManager
from .kind import ROOMS
from .shard import RoomShard

__all__ = ["ROOMS", "RoomManager", "RoomShard"]
