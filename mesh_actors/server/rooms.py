"""``server.room_manager``: room membership, room metadata and room broadcasts (spec §2.5).

Membership changes touch two owners: the RoomShard of the room and the ConnectionShard of the
member. A join records the room on the connection first, so a join interrupted halfway leaves at
worst a room name on the connection (harmless on cleanup), never a member nobody will remove.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..actors.connection_shard import connection_not_found
from ..actors.sharding import group_by_shard
from ..protocol.merge import MergeStrategy
from .connections import connection_id_of

if TYPE_CHECKING:
    from ..gateway.connection import Connection
    from .mesh_server import MeshServer

__all__ = ["RoomManager"]


def _check_room(room: Any) -> str:
    if not isinstance(room, str) or not room:
        raise ValueError("a room name must be a non-empty string")
    return room


class RoomManager:
    """Room-level operations of a :class:`MeshServer`."""

    def __init__(self, server: MeshServer) -> None:
        self._server = server

    def _room_shard(self, room: str) -> Any:
        return self._server.directory.room_shard(_check_room(room))

    def _connection_shard(self, connection_id: str) -> Any:
        return self._server.directory.connection_shard(connection_id)

    async def add(
        self, room: str, connection: Connection | str, *, gateway_id: str | None = None
    ) -> list[str]:
        """Add a connection to a room; returns every member id. ``ENOCONN`` if it does not exist."""
        cid = connection_id_of(connection)
        room_shard = self._room_shard(room)
        if gateway_id is None:
            gateway_id = await self._server.connection_manager.gateway_of(cid)
        if not await self._connection_shard(cid).call("add_room", cid, room):
            raise connection_not_found(cid)
        return list(await room_shard.call("join", room, cid, gateway_id))

    async def remove(self, room: str, connection: Connection | str) -> bool:
        """Remove a connection from a room; True if it was a member."""
        cid = connection_id_of(connection)
        was_member, _ = await asyncio.gather(
            self._room_shard(room).call("leave", room, cid),
            self._connection_shard(cid).call("remove_room", cid, room),
        )
        return bool(was_member)

    async def remove_from_all(self, connection: Connection | str) -> list[str]:
        """Remove a connection from every room it is in; returns those rooms."""
        cid = connection_id_of(connection)
        rooms = await self._server.connection_manager.rooms_of(cid)
        await asyncio.gather(*(self.remove(room, cid) for room in rooms))
        return rooms

    async def leave_rooms(self, connection_id: str, rooms: Collection[str]) -> None:
        """Drop a departed connection from ``rooms`` (its ConnectionShard entry is already gone)."""
        shards = self._server.directory.room_shards()
        groups = group_by_shard(rooms, len(shards))
        await asyncio.gather(
            *(
                shards[i].call("leave_all", tuple((room, connection_id) for room in group))
                for i, group in groups.items()
            )
        )

    async def is_in(self, room: str, connection: Connection | str) -> bool:
        """True if the connection is a member of the room."""
        return bool(await self._room_shard(room).call("has_member", room, connection_id_of(connection)))

    async def get_members(self, room: str) -> list[str]:
        """Member ids of the room, in join order."""
        return list(await self._room_shard(room).call("members", room))

    async def get_members_with_metadata(self, room: str) -> list[dict[str, Any]]:
        """``[{"id", "metadata"}]`` for every member (one round trip per connection shard)."""
        members = await self.get_members(room)
        metadata = await self._server.connection_manager.get_metadata_many(members)
        return [{"id": cid, "metadata": metadata.get(cid)} for cid in members]

    async def get_all_rooms(self) -> list[str]:
        """Every room that has members."""
        shards = self._server.directory.room_shards()
        results = await asyncio.gather(*(shard.call("rooms") for shard in shards))
        return [room for result in results for room in result]

    async def _forget_members(self, room: str, removed: list[str]) -> None:
        shards = self._server.directory.connection_shards()
        groups = group_by_shard(removed, len(shards))
        await asyncio.gather(*(shards[i].call("remove_room_members", room, ids) for i, ids in groups.items()))

    async def clear(self, room: str) -> list[str]:
        """Remove every member, keep the metadata; returns the removed ids."""
        removed = list(await self._room_shard(room).call("clear", room))
        await self._forget_members(room, removed)
        return removed

    async def delete(self, room: str) -> list[str]:
        """Remove every member and the metadata; returns the removed ids."""
        removed = list(await self._room_shard(room).call("delete", room))
        await self._forget_members(room, removed)
        return removed

    async def get_metadata(self, room: str) -> Any:
        """The room's metadata (``None`` if none)."""
        return await self._room_shard(room).call("get_metadata", room)

    async def set_metadata(self, room: str, value: Any, strategy: str | MergeStrategy = "replace") -> Any:
        """Set room metadata with ``replace`` (default), ``merge`` or ``deepMerge``; returns it."""
        return await self._room_shard(room).call("set_metadata", room, value, str(MergeStrategy(strategy)))

    async def update_metadata(self, room: str, value: Any) -> Any:
        """Merge ``value`` into the room's metadata (shallow merge)."""
        return await self.set_metadata(room, value, MergeStrategy.MERGE)

    async def get_all_metadata(self) -> list[dict[str, Any]]:
        """``[{"id": room, "metadata"}]`` for every room with metadata."""
        shards = self._server.directory.room_shards()
        results = await asyncio.gather(*(shard.call("all_metadata") for shard in shards))
        return [{"id": room, "metadata": meta} for result in results for room, meta in result]

    async def broadcast(self, room: str, payload: bytes, exclude: Collection[str] = ()) -> int:
        """Send an encoded frame to the room's members except ``exclude``; returns the count."""
        return int(await self._room_shard(room).call("broadcast", room, payload, tuple(exclude)))
