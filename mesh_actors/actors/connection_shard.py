"""ConnectionShard: the single owner of a slice of connections (by hash of connection id).

It owns, for each of its connections: which gateway holds the socket, the client-visible metadata,
the server-only auth data, and the set of rooms the connection is in. Redis (spec §4.1 keys plus
``connection-auth``) is the durable copy; :meth:`rebuild` restores the slice after a restart.

Concurrency rule for every method: state is changed before the first ``await`` and persistence goes
through the shard's :class:`OrderedWriter`, so interleaved calls can never lose an update
(the reference's read-modify-write metadata race, spec §8.2 #15, cannot happen here).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from ..protocol.errors import CodeError
from ..protocol.merge import MergeStrategy, apply_strategy
from ..store.keys import KeyLayout
from ..store.writer import OrderedWriter
from .jsonvalue import loads, normalize
from .sharding import shard_index, text

__all__ = ["ConnectionShard", "connection_not_found"]


def connection_not_found(connection_id: str) -> CodeError:
    """The error for an operation on a connection that does not exist (any more)."""
    return CodeError(f'Connection "{connection_id}" not found', "ENOCONN", "ConnectionError")


class ConnectionShard:
    """Owner of the connections whose id hashes to ``index`` of ``count``."""

    def __init__(
        self, index: int, count: int, redis: Redis, keys: KeyLayout, *, persist_timeout: float = 5.0
    ) -> None:
        self.index = index
        self.count = count
        self._redis = redis
        self._keys = keys
        self._writer = OrderedWriter(redis, persist_timeout=persist_timeout)
        self._gateway: dict[str, str] = {}
        self._since: dict[str, int] = {}
        self._metadata: dict[str, Any] = {}
        self._auth: dict[str, Any] = {}
        self._rooms: dict[str, set[str]] = {}

    def _owns(self, connection_id: str) -> bool:
        return shard_index(connection_id, self.count) == self.index

    # -- lifecycle -------------------------------------------------------------------------------

    async def register(self, connection_id: str, gateway_id: str, auth: Any = None) -> None:
        """Record a new connection on ``gateway_id``; truthy ``auth`` also becomes its metadata."""
        keys = self._keys
        self._gateway[connection_id] = gateway_id
        self._since[connection_id] = time.time_ns()
        self._rooms[connection_id] = set()
        ops: list[tuple[Any, ...]] = [
            ("HSET", keys.connections, connection_id, gateway_id),
            ("SADD", keys.gateway_connections(gateway_id), connection_id),
        ]
        if auth is not None:
            auth, encoded = normalize(auth)
            self._auth[connection_id] = auth
            ops.append(("HSET", keys.connection_auth, connection_id, encoded))
            if auth:
                # The reference writes truthy auth data as the initial metadata (spec §1.4).
                self._metadata[connection_id] = auth
                ops.append(("HSET", keys.connection_meta, connection_id, encoded))
        await self._writer.write(*ops)

    async def unregister(self, connection_id: str) -> list[str]:
        """Forget a connection; returns the rooms it was in (the caller removes it from them)."""
        keys = self._keys
        gateway_id = self._gateway.pop(connection_id, None)
        rooms = self._rooms.pop(connection_id, set())
        self._since.pop(connection_id, None)
        self._metadata.pop(connection_id, None)
        self._auth.pop(connection_id, None)
        ops: list[tuple[Any, ...]] = [
            ("HDEL", keys.connections, connection_id),
            ("HDEL", keys.connection_meta, connection_id),
            ("HDEL", keys.connection_auth, connection_id),
            ("DEL", keys.connection_rooms(connection_id)),
        ]
        if gateway_id is not None:
            ops.append(("SREM", keys.gateway_connections(gateway_id), connection_id))
        await self._writer.write(*ops)
        return sorted(rooms)

    async def drop_gateway(self, gateway_id: str) -> list[tuple[str, list[str]]]:
        """Forget every connection of a dead gateway; returns ``(connection id, rooms)`` pairs."""
        dropped = [cid for cid, gid in self._gateway.items() if gid == gateway_id]
        result = [(cid, await self.unregister(cid)) for cid in dropped]
        await self._writer.write(("DEL", self._keys.gateway_connections(gateway_id)))
        return result

    # -- lookups ---------------------------------------------------------------------------------

    async def gateway_ids(self) -> list[str]:
        """Ids of the gateways that hold this shard's connections."""
        return sorted(set(self._gateway.values()))

    async def exists(self, connection_id: str) -> bool:
        """True if the connection is registered."""
        return connection_id in self._gateway

    async def locate(self, connection_ids: Sequence[str]) -> dict[str, str]:
        """Gateway id of each known connection (unknown ids are left out)."""
        gateway = self._gateway
        return {cid: gateway[cid] for cid in connection_ids if cid in gateway}

    async def connections(self) -> list[tuple[str, int]]:
        """Every connection of this shard with its registration time (ns), for ordering."""
        return [(cid, self._since.get(cid, 0)) for cid in self._gateway]

    # -- metadata --------------------------------------------------------------------------------

    async def get_metadata(self, connection_id: str) -> Any:
        """The connection's metadata, ``None`` if unset or unknown."""
        return self._metadata.get(connection_id)

    async def get_metadata_many(self, connection_ids: Sequence[str]) -> dict[str, Any]:
        """Metadata of each given connection (``None`` where unset)."""
        metadata = self._metadata
        return {cid: metadata.get(cid) for cid in connection_ids}

    async def set_metadata(
        self, connection_id: str, value: Any, strategy: str = MergeStrategy.REPLACE
    ) -> Any:
        """Combine ``value`` with the stored metadata by ``strategy``; returns the stored result."""
        if connection_id not in self._gateway:
            raise connection_not_found(connection_id)
        final = apply_strategy(self._metadata.get(connection_id), value, MergeStrategy(strategy))
        final, encoded = normalize(final)
        self._metadata[connection_id] = final
        await self._writer.write(("HSET", self._keys.connection_meta, connection_id, encoded))
        return final

    async def get_auth(self, connection_id: str) -> Any:
        """The server-only auth data of the connection (what ``authenticate_connection`` returned)."""
        return self._auth.get(connection_id)

    # -- rooms of a connection -------------------------------------------------------------------

    async def add_room(self, connection_id: str, room: str) -> bool:
        """Note that the connection is in ``room``; False if the connection is unknown."""
        rooms = self._rooms.get(connection_id)
        if rooms is None:
            return False
        if room not in rooms:
            rooms.add(room)
            await self._writer.write(("SADD", self._keys.connection_rooms(connection_id), room))
        return True

    async def remove_room(self, connection_id: str, room: str) -> bool:
        """Note that the connection left ``room``; True if it was in it."""
        rooms = self._rooms.get(connection_id)
        if rooms is None or room not in rooms:
            return False
        rooms.discard(room)
        await self._writer.write(("SREM", self._keys.connection_rooms(connection_id), room))
        return True

    async def remove_room_members(self, room: str, connection_ids: Sequence[str]) -> None:
        """Drop ``room`` from each given connection (after the room was cleared or deleted)."""
        ops = []
        for cid in connection_ids:
            rooms = self._rooms.get(cid)
            if rooms is not None and room in rooms:
                rooms.discard(room)
                ops.append(("SREM", self._keys.connection_rooms(cid), room))
        await self._writer.write(*ops)

    async def rooms_of(self, connection_id: str) -> list[str]:
        """The rooms the connection is in."""
        return sorted(self._rooms.get(connection_id, ()))

    # -- restart ---------------------------------------------------------------------------------

    async def rebuild(self) -> int:
        """Load this shard's slice from Redis (after a restart); returns the connection count."""
        keys = self._keys
        registry: dict[str, str] = {}
        async for raw_id, raw_gateway in self._redis.hscan_iter(keys.connections):
            cid = text(raw_id)
            if self._owns(cid):
                registry[cid] = text(raw_gateway)
        ids = list(registry)
        self._gateway = registry
        self._since = {cid: position for position, cid in enumerate(ids)}
        self._metadata, self._auth, self._rooms = {}, {}, {}
        if not ids:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.connection_meta, ids)
            pipe.hmget(keys.connection_auth, ids)
            for cid in ids:
                pipe.smembers(keys.connection_rooms(cid))
            results = await pipe.execute()
        metas, auths, room_sets = results[0], results[1], results[2:]
        for cid, meta, auth, rooms in zip(ids, metas, auths, room_sets, strict=True):
            if meta is not None:
                self._metadata[cid] = loads(meta)
            if auth is not None:
                self._auth[cid] = loads(auth)
            self._rooms[cid] = {text(room) for room in rooms}
        return len(ids)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes (shutdown, tests); False if ``timeout`` elapsed first."""
        return await self._writer.drain(timeout)
