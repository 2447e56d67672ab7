"""Redis adapter of the room owners (docs/design.md#who-owns-what for the keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...actors.registry import Slot
from ...protocol.values import loads
from ...store.redis import RedisBackend, text
from ...store.redis.backend import glob_escape
from .port import StoredRooms

__all__ = ["RedisRoomStore"]

_METADATA_FIELD = "data"


class RedisRoomStore:
    """:class:`~.port.RoomStore` on Redis: ``room:<name>`` member sets, ``connection:<id>:rooms``
    room sets and ``roommeta:<name>`` hashes. Writes of one shard go through its own ordered writer."""

    def __init__(self, backend: RedisBackend, slot: Slot) -> None:
        self._redis = backend.redis
        self._keys = backend.keys
        self._slot = slot
        self._writer = backend.writer()

    async def add_member(self, room: str, connection_id: str) -> None:
        keys = self._keys
        await self._writer.write(
            ("SADD", keys.room(room), connection_id), ("SADD", keys.connection_rooms(connection_id), room)
        )

    async def remove_members(self, pairs: Sequence[tuple[str, str]]) -> None:
        keys = self._keys
        ops: list[tuple[Any, ...]] = []
        for room, cid in pairs:
            ops.append(("SREM", keys.room(room), cid))
            ops.append(("SREM", keys.connection_rooms(cid), room))
        await self._writer.write(*ops)

    async def clear(self, room: str, members: Sequence[str], *, metadata: bool) -> None:
        keys = self._keys
        ops: list[tuple[Any, ...]] = [("DEL", keys.room(room))]
        ops.extend(("SREM", keys.connection_rooms(cid), room) for cid in members)
        if metadata:
            ops.append(("DEL", keys.room_metadata(room)))
        await self._writer.write(*ops)

    async def set_metadata(self, room: str, metadata: bytes) -> None:
        await self._writer.write(("HSET", self._keys.room_metadata(room), _METADATA_FIELD, metadata))

    async def _scan_rooms(self, pattern: str, room_of: Any) -> list[str]:
        found = [room_of(text(key)) async for key in self._redis.scan_iter(match=glob_escape(pattern))]
        return [room for room in found if self._slot.owns(room)]

    async def load(self) -> StoredRooms:
        keys, redis = self._keys, self._redis
        rooms = await self._scan_rooms(keys.room_pattern, keys.room_of)
        meta_rooms = await self._scan_rooms(keys.room_metadata_pattern, keys.room_of_metadata)
        async with redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.smembers(keys.room(room))
            for room in meta_rooms:
                pipe.hget(keys.room_metadata(room), _METADATA_FIELD)
            results = await pipe.execute()
        member_sets = results[: len(rooms)]
        metadata = {
            room: loads(raw)
            for room, raw in zip(meta_rooms, results[len(rooms) :], strict=True)
            if raw is not None
        }
        member_ids = sorted({text(m) for members in member_sets for m in members})
        gateways = (
            dict(zip(member_ids, await redis.hmget(keys.connections, member_ids), strict=True))
            if member_ids
            else {}
        )
        members: dict[str, list[tuple[str, str]]] = {}
        stale: list[tuple[str, str]] = []
        for room, raw_members in zip(rooms, member_sets, strict=True):
            for member in sorted(text(m) for m in raw_members):
                gateway = gateways.get(member)
                if gateway is None:
                    stale.append((room, member))  # its connection is gone: do not resurrect it
                else:
                    members.setdefault(room, []).append((member, text(gateway)))
        if stale:
            await self.remove_members(stale)
        return StoredRooms(members, metadata)

    async def flush(self, timeout: float | None = None) -> bool:
        return await self._writer.drain(timeout)
