"""RoomShard: the single owner of a slice of rooms (by hash of room name).

It owns room membership (member -> gateway that holds its socket), the rooms of each member, room
metadata, and room fan-out: a broadcast becomes one message per gateway that holds members,
carrying the message encoded once and the ids of that gateway's members. Presence (tracked rooms,
TTLs, states) joins this actor next (docs/adding-a-feature.md).

Membership has this one owner: a connection's rooms are derived from it, never kept by a second
actor, so a join and a leave of the same room apply in the order they arrive (a pipelined join +
leave can never leave a ghost member behind).

Same concurrency rule as the connection owner: mutate before the first await, then persist
through the store, whose writes keep the order of the calls.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from ...actors.ref import Directory, GatewayActor, retry_safe
from ...actors.registry import Slot
from ...protocol.merge import MergeStrategy, apply_strategy
from ...protocol.values import normalize
from .port import RoomStore

__all__ = ["RoomShard"]

logger = logging.getLogger(__name__)


class RoomShard:
    """Owner of the rooms whose name hashes to ``slot``."""

    def __init__(self, slot: Slot, store: RoomStore, directory: Directory) -> None:
        self.slot = slot
        self._store = store
        self._directory = directory
        # room -> {connection id -> gateway id}; insertion order = join order.
        self._members: dict[str, dict[str, str]] = {}
        # room -> {gateway id -> {connection id}}: the fan-out index, kept in step with _members.
        self._by_gateway: dict[str, dict[str, set[str]]] = {}
        # connection id -> rooms of this shard it is in: the other direction of _members.
        self._rooms_of: dict[str, set[str]] = {}
        self._metadata: dict[str, Any] = {}

    # -- membership ------------------------------------------------------------------------------

    def _add(self, room: str, connection_id: str, gateway_id: str) -> bool:
        members = self._members.setdefault(room, {})
        previous = members.get(connection_id)
        if previous == gateway_id:
            return False
        if previous is not None:
            by_gateway = self._by_gateway[room]
            by_gateway[previous].discard(connection_id)
            if not by_gateway[previous]:
                del by_gateway[previous]
        members[connection_id] = gateway_id
        self._by_gateway.setdefault(room, {}).setdefault(gateway_id, set()).add(connection_id)
        self._rooms_of.setdefault(connection_id, set()).add(room)
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
            # Rooms exist while they have members, as Redis sets do (docs/protocol.md#rooms).
            del self._members[room]
            del self._by_gateway[room]
        rooms = self._rooms_of.get(connection_id)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[connection_id]
        return True

    def _forget_room(self, room: str) -> list[str]:
        removed = list(self._members.pop(room, ()))
        self._by_gateway.pop(room, None)
        for cid in removed:
            rooms = self._rooms_of.get(cid)
            if rooms is not None:
                rooms.discard(room)
                if not rooms:
                    del self._rooms_of[cid]
        return removed

    async def join(self, room: str, connection_id: str, gateway_id: str) -> list[str]:
        """Add a member (idempotent); returns every member id, in join order."""
        if self._add(room, connection_id, gateway_id):
            members = list(self._members[room])
            await self._store.add_member(room, connection_id)
            return members
        return list(self._members[room])

    async def leave(self, room: str, connection_id: str) -> bool:
        """Remove a member; True if it was one."""
        if not self._remove(room, connection_id):
            return False
        await self._store.remove_members(((room, connection_id),))
        return True

    async def drop_connection(self, connection_id: str) -> list[str]:
        """Remove a connection from every room of this shard (it disconnected); returns the rooms."""
        rooms = sorted(self._rooms_of.get(connection_id, ()))
        pairs = [(room, connection_id) for room in rooms if self._remove(room, connection_id)]
        await self._store.remove_members(pairs)
        return rooms

    async def drop_gateway(self, gateway_id: str) -> list[str]:
        """Remove every member held by a dead gateway; returns their connection ids."""
        pairs = [
            (room, cid)
            for room, by_gateway in self._by_gateway.items()
            for cid in by_gateway.get(gateway_id, ())
        ]
        removed = [pair for pair in pairs if self._remove(*pair)]
        await self._store.remove_members(removed)
        return sorted({cid for _, cid in removed})

    @retry_safe
    async def gateway_ids(self) -> list[str]:
        """Ids of the gateways that hold members of this shard's rooms."""
        return sorted({gid for by_gateway in self._by_gateway.values() for gid in by_gateway})

    @retry_safe
    async def members(self, room: str) -> list[str]:
        """Member ids of ``room`` in join order (empty if the room has none)."""
        return list(self._members.get(room, ()))

    @retry_safe
    async def has_member(self, room: str, connection_id: str) -> bool:
        """True if the connection is in the room."""
        return connection_id in self._members.get(room, ())

    @retry_safe
    async def rooms(self) -> list[str]:
        """Every room of this shard that has members."""
        return list(self._members)

    @retry_safe
    async def rooms_of(self, connection_id: str) -> list[str]:
        """The rooms of this shard the connection is in."""
        return sorted(self._rooms_of.get(connection_id, ()))

    async def clear(self, room: str) -> list[str]:
        """Remove every member but keep the metadata; returns the removed member ids."""
        removed = self._forget_room(room)
        await self._store.clear(room, removed, metadata=False)
        return removed

    async def delete(self, room: str) -> list[str]:
        """Remove every member and the metadata; returns the removed member ids."""
        removed = self._forget_room(room)
        self._metadata.pop(room, None)
        await self._store.clear(room, removed, metadata=True)
        return removed

    # -- metadata --------------------------------------------------------------------------------

    @retry_safe
    async def get_metadata(self, room: str) -> Any:
        """The room's metadata, ``None`` if none was set."""
        return self._metadata.get(room)

    async def set_metadata(self, room: str, value: Any, strategy: str = MergeStrategy.REPLACE) -> Any:
        """Combine ``value`` with the room's metadata by ``strategy``; returns the stored result."""
        final = apply_strategy(self._metadata.get(room), value, MergeStrategy(strategy))
        final, encoded = normalize(final)
        self._metadata[room] = final
        await self._store.set_metadata(room, encoded)
        return final

    @retry_safe
    async def all_metadata(self) -> list[tuple[str, Any]]:
        """``(room, metadata)`` for every room of this shard that has metadata."""
        return list(self._metadata.items())

    # -- fan-out ---------------------------------------------------------------------------------

    async def broadcast(self, room: str, message: bytes, exclude: Collection[str] = ()) -> int:
        """Send an encoded message to the room's members (minus ``exclude``); returns the count sent.

        One message per gateway: the bytes are shared, only the id lists differ.
        """
        by_gateway = self._by_gateway.get(room)
        if not by_gateway:
            return 0
        sent = 0
        directory = self._directory
        for gateway_id, local in by_gateway.items():
            targets = tuple(local.difference(exclude)) if exclude else tuple(local)
            if not targets:
                continue
            gateway = directory.gateway(gateway_id)
            if gateway is None:
                logger.warning("room %r: no link to gateway %s", room, gateway_id)
                continue
            gateway.tell(GatewayActor.deliver, message, targets)
            sent += len(targets)
        return sent

    # -- restart ---------------------------------------------------------------------------------

    async def rebuild(self) -> int:
        """Load this shard's slice from the store (after a restart); returns the room count."""
        stored = await self._store.load()
        self._members, self._by_gateway, self._rooms_of = {}, {}, {}
        self._metadata = dict(stored.metadata)
        for room, members in stored.members.items():
            for cid, gateway_id in members:
                self._add(room, cid, gateway_id)
        return len(self._members)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes (shutdown, tests); False if ``timeout`` elapsed first."""
        return await self._store.flush(timeout)
