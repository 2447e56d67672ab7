"""Redis adapter of the connection owners (docs/design.md#who-owns-what for the keys)."""

from __future__ import annotations

from typing import Any

from ...actors.registry import Slot
from ...protocol.values import loads
from ...store.redis import RedisBackend, text
from .port import StoredConnection

__all__ = ["RedisConnectionStore"]


class RedisConnectionStore:
    """:class:`~.port.ConnectionStore` on Redis: the registry hash, the per-gateway sets, the
    metadata and auth hashes. Writes of one shard go through its own ordered writer."""

    def __init__(self, backend: RedisBackend, slot: Slot) -> None:
        self._redis = backend.redis
        self._keys = backend.keys
        self._slot = slot
        self._writer = backend.writer()

    async def register(
        self, connection_id: str, gateway_id: str, auth: bytes | None, metadata: bytes | None
    ) -> None:
        keys = self._keys
        ops: list[tuple[Any, ...]] = [
            ("HSET", keys.connections, connection_id, gateway_id),
            ("SADD", keys.gateway_connections(gateway_id), connection_id),
        ]
        if auth is not None:
            ops.append(("HSET", keys.connection_auth, connection_id, auth))
        if metadata is not None:
            ops.append(("HSET", keys.connection_meta, connection_id, metadata))
        await self._writer.write(*ops)

    async def unregister(self, connection_id: str, gateway_id: str | None) -> None:
        keys = self._keys
        ops: list[tuple[Any, ...]] = [
            ("HDEL", keys.connections, connection_id),
            ("HDEL", keys.connection_meta, connection_id),
            ("HDEL", keys.connection_auth, connection_id),
        ]
        if gateway_id is not None:
            ops.append(("SREM", keys.gateway_connections(gateway_id), connection_id))
        await self._writer.write(*ops)

    async def forget_gateway(self, gateway_id: str) -> None:
        await self._writer.write(("DEL", self._keys.gateway_connections(gateway_id)))

    async def set_metadata(self, connection_id: str, metadata: bytes) -> None:
        await self._writer.write(("HSET", self._keys.connection_meta, connection_id, metadata))

    async def load(self) -> list[StoredConnection]:
        keys = self._keys
        registry: dict[str, str] = {}
        async for raw_id, raw_gateway in self._redis.hscan_iter(keys.connections):
            cid = text(raw_id)
            if self._slot.owns(cid):
                registry[cid] = text(raw_gateway)
        ids = list(registry)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.connection_meta, ids)
            pipe.hmget(keys.connection_auth, ids)
            metas, auths = await pipe.execute()
        return [
            StoredConnection(cid, registry[cid], loads(meta), loads(auth))
            for cid, meta, auth in zip(ids, metas, auths, strict=True)
        ]

    async def flush(self, timeout: float | None = None) -> bool:
        return await self._writer.drain(timeout)
