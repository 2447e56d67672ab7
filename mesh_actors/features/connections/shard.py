"""ConnectionShard: the single owner of a slice of connections (by hash of connection id).

It owns, for each of its connections: which gateway holds the socket, the client-visible metadata
and the server-only auth data. Its store (:mod:`.port`) is the durable copy; :meth:`rebuild`
restores the slice after a restart. Which rooms a connection is in belongs to the room owners
(docs/design.md#who-owns-what).

Concurrency rule for every method: state is changed before the first ``await`` and the store
writes in the order of the calls, so interleaved calls can never lose an update (the reference's
read-modify-write metadata race cannot happen here: docs/protocol.md#reference-bugs-we-do-not-copy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ...actors.ref import Directory, retry_safe
from ...actors.registry import Slot
from ...protocol.errors import CodeError, ErrorCode
from ...protocol.merge import MergeStrategy, apply_strategy
from ...protocol.values import normalize
from .port import ConnectionStore

__all__ = ["ConnectionShard", "connection_not_found"]


def connection_not_found(connection_id: str) -> CodeError:
    """The error for an operation on a connection that does not exist (any more)."""
    return CodeError(f'Connection "{connection_id}" not found', ErrorCode.NO_CONNECTION, "ConnectionError")


class ConnectionShard:
    """Owner of the connections whose id hashes to ``slot``."""

    def __init__(self, slot: Slot, store: ConnectionStore, directory: Directory | None = None) -> None:
        self.slot = slot
        self._store = store
        self._gateway: dict[str, str] = {}
        self._since: dict[str, int] = {}
        self._metadata: dict[str, Any] = {}
        self._auth: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    async def register(self, connection_id: str, gateway_id: str, auth: Any = None) -> None:
        """Record a new connection on ``gateway_id``; truthy ``auth`` also becomes its metadata."""
        self._gateway[connection_id] = gateway_id
        self._since[connection_id] = time.time_ns()
        encoded_auth = encoded_metadata = None
        if auth is not None:
            auth, encoded_auth = normalize(auth)
            self._auth[connection_id] = auth
            if auth:
                # As in the reference, truthy auth data is the initial metadata
                # (docs/protocol.md#authentication).
                self._metadata[connection_id] = auth
                encoded_metadata = encoded_auth
        await self._store.register(connection_id, gateway_id, encoded_auth, encoded_metadata)

    async def unregister(self, connection_id: str) -> bool:
        """Forget a connection; True if it was registered."""
        gateway_id = self._gateway.pop(connection_id, None)
        self._since.pop(connection_id, None)
        self._metadata.pop(connection_id, None)
        self._auth.pop(connection_id, None)
        await self._store.unregister(connection_id, gateway_id)
        return gateway_id is not None

    async def drop_connection(self, connection_id: str) -> bool:
        """The connection went away: forget it (:meth:`unregister`)."""
        return await self.unregister(connection_id)

    async def drop_gateway(self, gateway_id: str) -> list[str]:
        """Forget every connection of a dead gateway; returns their ids."""
        dropped = [cid for cid, gid in self._gateway.items() if gid == gateway_id]
        # Started together, the writes travel in one batch instead of one round trip each.
        await asyncio.gather(*(self.unregister(cid) for cid in dropped))
        await self._store.forget_gateway(gateway_id)
        return dropped

    # -- lookups ---------------------------------------------------------------------------------

    @retry_safe
    async def gateway_ids(self) -> list[str]:
        """Ids of the gateways that hold this shard's connections."""
        return sorted(set(self._gateway.values()))

    @retry_safe
    async def exists(self, connection_id: str) -> bool:
        """True if the connection is registered."""
        return connection_id in self._gateway

    @retry_safe
    async def locate(self, connection_ids: Sequence[str]) -> dict[str, str]:
        """Gateway id of each known connection (unknown ids are left out)."""
        gateway = self._gateway
        return {cid: gateway[cid] for cid in connection_ids if cid in gateway}

    @retry_safe
    async def connections(self) -> list[tuple[str, int]]:
        """Every connection of this shard with its registration time (ns), for ordering."""
        return [(cid, self._since.get(cid, 0)) for cid in self._gateway]

    # -- metadata --------------------------------------------------------------------------------

    @retry_safe
    async def get_metadata(self, connection_id: str) -> Any:
        """The connection's metadata, ``None`` if unset or unknown."""
        return self._metadata.get(connection_id)

    @retry_safe
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
        await self._store.set_metadata(connection_id, encoded)
        return final

    @retry_safe
    async def get_auth(self, connection_id: str) -> Any:
        """The server-only auth data of the connection (what ``authenticate_connection`` returned)."""
        return self._auth.get(connection_id)

    # -- restart ---------------------------------------------------------------------------------

    async def rebuild(self) -> int:
        """Load this shard's slice from the store (after a restart); returns the connection count."""
        stored = await self._store.load()
        self._gateway = {entry.id: entry.gateway_id for entry in stored}
        self._since = {entry.id: position for position, entry in enumerate(stored)}
        self._metadata = {entry.id: entry.metadata for entry in stored if entry.metadata is not None}
        self._auth = {entry.id: entry.auth for entry in stored if entry.auth is not None}
        return len(stored)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes (shutdown, tests); False if ``timeout`` elapsed first."""
        return await self._store.flush(timeout)
