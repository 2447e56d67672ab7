"""``server.room_manager``: room membership, room metadata and room broadcasts (docs/protocol.md#rooms).

The room owners are the single source of membership; the rooms of a connection are asked of
them. A server-side add checks afterwards that the connection still exists: a disconnect
unregisters the connection before it clears its rooms, so a member added meanwhile is removed
again here rather than left behind as a ghost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from ...actors.ref import ActorRef
from ...protocol.merge import MergeStrategy
from ..base import Client, Deployment
from ..connections.api import ConnectionManager, connection_id_of
from ..connections.shard import connection_not_found
from .kind import ROOMS
from .shard import RoomShard

__all__ = ["RoomManager"]


def _check_room(room: Any) -> str:
    if not isinstance(room, str) or not room:
        raise ValueError("a room name must be a non-empty string")
    return room


class RoomManager:
    """Room-level operations of the server API."""

    def __init__(self, deployment: Deployment, connections: ConnectionManager) -> None:
        self._deployment = deployment
        self._connections = connections

    def _owner(self, room: str) -> ActorRef[RoomShard]:
        return self._deployment.directory.shard(ROOMS, _check_room(room))

    def _owners(self) -> Sequence[ActorRef[RoomShard]]:
        return self._deployment.directory.shards(ROOMS)

    async def add(self, room: str, connection: Client | str, *, gateway_id: str | None = None) -> list[str]:
        """Add a connection to a room; returns every member id. ``ENOCONN`` if it does not exist.

        ``gateway_id`` is given by the gateway for its own live connection (a client's
        ``join-room``); server-side calls look the connection up.
        """
        cid = connection_id_of(connection)
        owner = self._owner(room)
        if gateway_id is not None:
            return list(await owner.call(RoomShard.join, room, cid, gateway_id))
        gateway_id = await self._connections.gateway_of(cid)
        members = list(await owner.call(RoomShard.join, room, cid, gateway_id))
        if not await self._connections.exists(cid):
            await owner.call(RoomShard.leave, room, cid)
            raise connection_not_found(cid)
        return members

    async def remove(self, room: str, connection: Client | str) -> bool:
        """Remove a connection from a room; True if it was a member."""
        cid = connection_id_of(connection)
        return bool(await self._owner(room).call(RoomShard.leave, room, cid))

    async def remove_from_all(self, connection: Client | str) -> list[str]:
        """Remove a connection from every room it is in; returns those rooms."""
        cid = connection_id_of(connection)
        results = await asyncio.gather(
            *(owner.call(RoomShard.drop_connection, cid) for owner in self._owners())
        )
        return sorted(room for rooms in results for room in rooms)

    async def rooms_of(self, connection: Client | str) -> list[str]:
        """The rooms the connection is in."""
        cid = connection_id_of(connection)
        results = await asyncio.gather(*(owner.call(RoomShard.rooms_of, cid) for owner in self._owners()))
        return sorted(room for rooms in results for room in rooms)

    async def is_in(self, room: str, connection: Client | str) -> bool:
        """True if the connection is a member of the room."""
        return bool(await self._owner(room).call(RoomShard.has_member, room, connection_id_of(connection)))

    async def get_members(self, room: str) -> list[str]:
        """Member ids of the room, in join order."""
        return list(await self._owner(room).call(RoomShard.members, room))

    async def get_members_with_metadata(self, room: str) -> list[dict[str, Any]]:
        """``[{"id", "metadata"}]`` for every member (one round trip per connection shard)."""
        members = await self.get_members(room)
        metadata = await self._connections.get_metadata_many(members)
        return [{"id": cid, "metadata": metadata.get(cid)} for cid in members]

    async def get_all_rooms(self) -> list[str]:
        """Every room that has members."""
        results = await asyncio.gather(*(owner.call(RoomShard.rooms) for owner in self._owners()))
        return [room for result in results for room in result]

    async def clear(self, room: str) -> list[str]:
        """Remove every member, keep the metadata; returns the removed ids."""
        return list(await self._owner(room).call(RoomShard.clear, room))

    async def delete(self, room: str) -> list[str]:
        """Remove every member and the metadata; returns the removed ids."""
        return list(await self._owner(room).call(RoomShard.delete, room))

    async def get_metadata(self, room: str) -> Any:
        """The room's metadata (``None`` if none)."""
        return await self._owner(room).call(RoomShard.get_metadata, room)

    async def set_metadata(self, room: str, value: Any, strategy: str | MergeStrategy = "replace") -> Any:
        """Set room metadata with ``replace`` (default), ``merge`` or ``deepMerge``; returns it."""
        return await self._owner(room).call(RoomShard.set_metadata, room, value, str(MergeStrategy(strategy)))

    async def update_metadata(self, room: str, value: Any) -> Any:
        """Merge ``value`` into the room's metadata (shallow merge)."""
        return await self.set_metadata(room, value, MergeStrategy.MERGE)

    async def get_all_metadata(self) -> list[dict[str, Any]]:
        """``[{"id": room, "metadata"}]`` for every room with metadata."""
        results = await asyncio.gather(*(owner.call(RoomShard.all_metadata) for owner in self._owners()))
        return [{"id": room, "metadata": meta} for result in results for room, meta in result]

    async def broadcast(self, room: str, message: bytes, exclude: Collection[str] = ()) -> int:
        """Send an encoded message to the room's members except ``exclude``; returns the count."""
        return int(await self._owner(room).call(RoomShard.broadcast, room, message, tuple(exclude)))
