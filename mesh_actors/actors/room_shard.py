"""RoomShard: the single owner of a slice of rooms (by hash of room name).

It owns room membership (member -> gateway that holds its socket), room metadata, and room
fan-out: a broadcast becomes one message per gateway that holds members, carrying the frame encoded
once and the ids of that gateway's members. Presence (tracked rooms, TTLs, states) joins this actor
in a later slice, which is why membership is kept with the gateway of each member.

Same concurrency rule as :mod:`.connection_shard`: mutate before the first await, persist through
the ordered writer.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from redis.asyncio import Redis

from ..protocol.merge import MergeStrategy, apply_strategy
from ..store.keys import KeyLayout
from ..store.writer import OrderedWriter
from .jsonvalue import loads, normalize
from .links import Directory
from .sharding import shard_index, text

__all__ = ["RoomShard"]

logger = logging.getLogger(__name__)

_ROOM_METADATA_FIELD = "data"


class RoomShard:
    """Owner of the rooms whose name hashes to ``index`` of ``count``."""

    def __init__(
        self,
        index: int,
        count: int,
        redis: Redis,
        keys: KeyLayout,
        directory: Directory,
        *,
        persist_timeout: float = 5.0,
    ) -> None:
        self.index = index
        self.count = count
        self._redis = redis
        self._keys = keys
        self._directory = directory
        self._writer = OrderedWriter(redis, persist_timeout=persist_timeout)
        # room -> {connection id -> gateway id}; insertion order = join order.
        self._members: dict[str, dict[str, str]] = {}
        # room -> {gateway id -> {connection id}}: the fan-out index, kept in step with _members.
        self._by_gateway: dict[str, dict[str, set[str]]] = {}
        self._metadata: dict[str, Any] = {}

    def _owns(self, room: str) -> bool:
        return shard_index(room, self.count) == self.index

    # -- membership ------------------------------------------------------------------------------

    def _add(self, room: str, connection_id: str, gateway_id: str) -> bool:
        members = self._members.setdefault(room, {})
        previous = members.get(connection_id)
        if previous == gateway_id:
            return False
        if previous is not None:
            self._by_gateway[room][previous].discard(connection_id)
        members[connection_id] = gateway_id
        self._by_gateway.setdefault(room, {}).setdefault(gateway_id, set()).add(connection_id)
        return previous is None

    def _remove(self, room: str, connection_id: str) -> bool:
        members = self._members.get(room)
        if not members or connection_id not in members:
            return False
        gateway_id = members.pop(connection_id)
        by_gateway = self._by_gateway[room]
        local = by_gateway[gateway_id]
        local.discard(connection_id)
        if not local:
            del by_gateway[gateway_id]
        if not members:
            # Rooms exist while they have members, as Redis sets do (spec §2.5).
            del self._members[room]
            del self._by_gateway[room]
        return True

    async def join(self, room: str, connection_id: str, gateway_id: str) -> list[str]:
        """Add a member (idempotent); returns every member id, in join order."""
        if self._add(room, connection_id, gateway_id):
            await self._writer.write(("SADD", self._keys.room(room), connection_id))
        return list(self._members[room])

    async def leave(self, room: str, connection_id: str) -> bool:
        """Remove a member; True if it was one."""
        if not self._remove(room, connection_id):
            return False
        await self._writer.write(("SREM", self._keys.room(room), connection_id))
        return True

    async def leave_all(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Remove many ``(room, connection id)`` memberships in one write (disconnect cleanup)."""
        ops = [("SREM", self._keys.room(room), cid) for room, cid in pairs if self._remove(room, cid)]
        await self._writer.write(*ops)
        return len(ops)

    async def drop_gateway(self, gateway_id: str) -> list[tuple[str, str]]:
        """Remove every member held by a dead gateway; returns the removed ``(room, id)`` pairs."""
        pairs = [
            (room, cid)
            for room, by_gateway in self._by_gateway.items()
            for cid in by_gateway.get(gateway_id, ())
        ]
        await self.leave_all(pairs)
        return pairs

    async def members(self, room: str) -> list[str]:
        """Member ids of ``room`` in join order (empty if the room has none)."""
        return list(self._members.get(room, ()))

    async def has_member(self, room: str, connection_id: str) -> bool:
        """True if the connection is in the room."""
        return connection_id in self._members.get(room, ())

    async def rooms(self) -> list[str]:
        """Every room of this shard that has members."""
        return list(self._members)

    async def clear(self, room: str) -> list[str]:
        """Remove every member but keep the metadata; returns the removed member ids."""
        removed = list(self._members.pop(room, ()))
        self._by_gateway.pop(room, None)
        await self._writer.write(("DEL", self._keys.room(room)))
        return removed

    async def delete(self, room: str) -> list[str]:
        """Remove every member and the metadata; returns the removed member ids."""
        removed = list(self._members.pop(room, ()))
        self._by_gateway.pop(room, None)
        self._metadata.pop(room, None)
        await self._writer.write(("DEL", self._keys.room(room)), ("DEL", self._keys.room_metadata(room)))
        return removed

    # -- metadata --------------------------------------------------------------------------------

    async def get_metadata(self, room: str) -> Any:
        """The room's metadata, ``None`` if none was set."""
        return self._metadata.get(room)

    async def set_metadata(self, room: str, value: Any, strategy: str = MergeStrategy.REPLACE) -> Any:
        """Combine ``value`` with the room's metadata by ``strategy``; returns the stored result."""
        final = apply_strategy(self._metadata.get(room), value, MergeStrategy(strategy))
        final, encoded = normalize(final)
        self._metadata[room] = final
        await self._writer.write(("HSET", self._keys.room_metadata(room), _ROOM_METADATA_FIELD, encoded))
        return final

    async def all_metadata(self) -> list[tuple[str, Any]]:
        """``(room, metadata)`` for every room of this shard that has metadata."""
        return list(self._metadata.items())

    # -- fan-out ---------------------------------------------------------------------------------

    async def broadcast(self, room: str, payload: bytes, exclude: Collection[str] = ()) -> int:
        """Send an encoded frame to the room's members (minus ``exclude``); returns the count sent.

        One message per gateway: the frame bytes are shared, only the id lists differ.
        """
        by_gateway = self._by_gateway.get(room)
        if not by_gateway:
            return 0
        sent = 0
        for gateway_id, local in by_gateway.items():
            targets = tuple(local.difference(exclude)) if exclude else tuple(local)
            if not targets:
                continue
            gateway = self._directory.gateway(gateway_id)
            if gateway is None:
                logger.warning("room %r: no link to gateway %s", room, gateway_id)
                continue
            gateway.tell("deliver", payload, targets)
            sent += len(targets)
        return sent

    # -- restart ---------------------------------------------------------------------------------

    async def rebuild(self) -> int:
        """Load this shard's slice from Redis (after a restart); returns the room count."""
        keys = self._keys
        redis = self._redis
        rooms = [
            room
            for room in [
                keys.room_of(text(key)) async for key in redis.scan_iter(match=_glob(keys.room_pattern))
            ]
            if self._owns(room)
        ]
        meta_rooms = [
            room
            for room in [
                keys.room_of_metadata(text(key))
                async for key in redis.scan_iter(match=_glob(keys.room_metadata_pattern))
            ]
            if self._owns(room)
        ]
        self._members, self._by_gateway, self._metadata = {}, {}, {}
        async with redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.smembers(keys.room(room))
            for room in meta_rooms:
                pipe.hget(keys.room_metadata(room), _ROOM_METADATA_FIELD)
            results = await pipe.execute()
        member_sets = results[: len(rooms)]
        for room, raw in zip(meta_rooms, results[len(rooms) :], strict=True):
            if raw is not None:
                self._metadata[room] = loads(raw)
        member_ids = sorted({text(m) for members in member_sets for m in members})
        gateways = (
            dict(zip(member_ids, await redis.hmget(keys.connections, member_ids), strict=True))
            if member_ids
            else {}
        )
        stale: list[tuple[str, str]] = []
        for room, members in zip(rooms, member_sets, strict=True):
            for member in sorted(text(m) for m in members):
                gateway = gateways.get(member)
                if gateway is None:
                    stale.append((room, member))  # its connection is gone: do not resurrect it
                else:
                    self._add(room, member, text(gateway))
        if stale:
            await self._writer.write(*[("SREM", keys.room(room), cid) for room, cid in stale])
        return len(self._members)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes (shutdown, tests); False if ``timeout`` elapsed first."""
        return await self._writer.drain(timeout)


def _glob(pattern: str) -> str:
    """Escape glob characters of the key prefix, keeping the trailing ``*`` wildcard."""
    head = pattern[:-1]
    for char in "\\*?[]":
        head = head.replace(char, "\\" + char)
    return head + "*"
