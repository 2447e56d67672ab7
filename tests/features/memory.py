"""In-memory storage ports, FOR UNIT TESTS ONLY (they never ship in ``mesh_actors``).

They keep exactly what the Redis adapters keep, encoded the same way (JSON bytes), so a shard
rebuilt from one behaves as if it were rebuilt from Redis:

- :class:`MemoryConnectionStore`: the registry (connection id -> gateway id), the per-gateway
  sets, the metadata and the auth data of ``mesh_actors.features.connections.port.ConnectionStore``.
- :class:`MemoryRoomStore`: the member set of each room, the room set of each member and the room
  metadata of ``mesh_actors.features.rooms.port.RoomStore``. It is built over a connection store,
  the registry it checks members against on :meth:`~MemoryRoomStore.load`, as the Redis adapter
  checks the ``connections`` hash.

Writes are applied when they are called (the Redis adapter's ordered writer also fixes the order of
the writes at call time), then confirmed on a later turn of the event loop, so other calls run while
a write is in flight, as with Redis. :class:`WriteGate` lets a test hold the confirmations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mesh_actors.features.connections.port import ConnectionStore, StoredConnection
from mesh_actors.features.rooms.port import RoomStore, StoredRooms
from mesh_actors.protocol.values import loads

__all__ = ["MemoryConnectionStore", "MemoryRoomStore", "WriteGate"]


class WriteGate:
    """When writes are confirmed: on the next turn of the loop (default), or, after :meth:`hold`, at
    :meth:`release`."""

    def __init__(self) -> None:
        self._released = asyncio.Event()
        self._released.set()
        self._arrived = asyncio.Event()
        self.waiting = 0
        """How many writes are applied and wait for their confirmation."""

    def hold(self) -> None:
        """Writes from now on wait for :meth:`release` (they are applied already)."""
        if self._released.is_set():
            self._released = asyncio.Event()

    def release(self) -> None:
        """Confirm every held write; later writes are confirmed on the next turn of the loop again."""
        self._released.set()

    async def confirm(self) -> None:
        """What a write awaits after it was applied."""
        released = self._released
        if released.is_set():
            # Confirmed on the next turn of the loop, never before the caller yields: as with Redis,
            # other calls run while a write is in flight.
            confirmed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(confirmed.set_result, None)
            await confirmed
            return
        self.waiting += 1
        self._arrived.set()
        try:
            await released.wait()
        finally:
            self.waiting -= 1

    async def until_waiting(self, count: int, timeout: float = 5.0) -> None:
        """Return once ``count`` writes wait for their confirmation (fail after ``timeout``: fewer
        writes were made than the test expects)."""
        try:
            async with asyncio.timeout(timeout):
                while self.waiting < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"{self.waiting} writes in flight, expected {count}") from None

    async def flush(self, timeout: float | None) -> bool:
        """Wait for held writes to be confirmed; False if ``timeout`` elapsed first."""
        if self.waiting == 0:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._released.wait()
        except TimeoutError:
            return False
        return True


def _discard(sets: dict[str, set[str]], key: str, member: str) -> None:
    """SREM: remove ``member``; an empty set is gone (as in Redis)."""
    members = sets.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del sets[key]


class MemoryConnectionStore(ConnectionStore):
    """:class:`ConnectionStore` in dicts (unit tests only)."""

    def __init__(self) -> None:
        self.gate = WriteGate()
        self.connections: dict[str, str] = {}
        """connection id -> gateway id, in registration order (the ``connections`` hash)."""
        self.gateway_connections: dict[str, set[str]] = {}
        """gateway id -> its connection ids (the ``connections:<gateway>`` sets)."""
        self.metadata: dict[str, bytes] = {}
        """connection id -> JSON metadata (the ``connection-meta`` hash)."""
        self.auth: dict[str, bytes] = {}
        """connection id -> JSON auth data (the ``connection-auth`` hash)."""

    def is_empty(self) -> bool:
        """True if nothing at all is stored."""
        return not (self.connections or self.gateway_connections or self.metadata or self.auth)

    async def register(
        self, connection_id: str, gateway_id: str, auth: bytes | None, metadata: bytes | None
    ) -> None:
        self.connections[connection_id] = gateway_id
        self.gateway_connections.setdefault(gateway_id, set()).add(connection_id)
        if auth is not None:
            self.auth[connection_id] = auth
        if metadata is not None:
            self.metadata[connection_id] = metadata
        await self.gate.confirm()

    async def unregister(self, connection_id: str, gateway_id: str | None) -> None:
        self.connections.pop(connection_id, None)
        self.metadata.pop(connection_id, None)
        self.auth.pop(connection_id, None)
        if gateway_id is not None:
            _discard(self.gateway_connections, gateway_id, connection_id)
        await self.gate.confirm()

    async def forget_gateway(self, gateway_id: str) -> None:
        self.gateway_connections.pop(gateway_id, None)
        await self.gate.confirm()

    async def set_metadata(self, connection_id: str, metadata: bytes) -> None:
        self.metadata[connection_id] = metadata
        await self.gate.confirm()

    async def load(self) -> list[StoredConnection]:
        return [
            StoredConnection(cid, gateway_id, loads(self.metadata.get(cid)), loads(self.auth.get(cid)))
            for cid, gateway_id in self.connections.items()
        ]

    async def flush(self, timeout: float | None = None) -> bool:
        return await self.gate.flush(timeout)


class MemoryRoomStore(RoomStore):
    """:class:`RoomStore` in dicts (unit tests only), over the registry of ``connections``."""

    def __init__(self, connections: MemoryConnectionStore) -> None:
        self.gate = WriteGate()
        self.registry = connections
        self.members: dict[str, set[str]] = {}
        """room -> member connection ids (the ``room:<room>`` sets)."""
        self.rooms_of: dict[str, set[str]] = {}
        """connection id -> its rooms (the ``connection:<id>:rooms`` sets)."""
        self.metadata: dict[str, bytes] = {}
        """room -> JSON metadata (the ``roommeta:<room>`` hashes)."""

    def is_empty(self) -> bool:
        """True if nothing at all is stored."""
        return not (self.members or self.rooms_of or self.metadata)

    async def add_member(self, room: str, connection_id: str) -> None:
        self.members.setdefault(room, set()).add(connection_id)
        self.rooms_of.setdefault(connection_id, set()).add(room)
        await self.gate.confirm()

    async def remove_members(self, pairs: Sequence[tuple[str, str]]) -> None:
        for room, cid in pairs:
            _discard(self.members, room, cid)
            _discard(self.rooms_of, cid, room)
        await self.gate.confirm()

    async def clear(self, room: str, members: Sequence[str], *, metadata: bool) -> None:
        self.members.pop(room, None)
        for cid in members:
            _discard(self.rooms_of, cid, room)
        if metadata:
            self.metadata.pop(room, None)
        await self.gate.confirm()

    async def set_metadata(self, room: str, metadata: bytes) -> None:
        self.metadata[room] = metadata
        await self.gate.confirm()

    async def load(self) -> StoredRooms:
        registry = self.registry.connections
        members: dict[str, list[tuple[str, str]]] = {}
        stale: list[tuple[str, str]] = []
        for room, ids in self.members.items():
            for cid in sorted(ids):
                gateway_id = registry.get(cid)
                if gateway_id is None:
                    stale.append((room, cid))  # its connection is gone: never resurrected
                else:
                    members.setdefault(room, []).append((cid, gateway_id))
        if stale:
            await self.remove_members(stale)
        metadata = {room: loads(raw) for room, raw in self.metadata.items()}
        return StoredRooms(members, metadata)

    async def flush(self, timeout: float | None = None) -> bool:
        return await self.gate.flush(timeout)
