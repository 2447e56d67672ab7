"""The storage port of the connection owners: what a ConnectionShard asks of its store.

The shard keeps its slice in memory and calls these after each change; an adapter holds the key
layout and the write ordering (``features.connections.redis`` for Redis). Every write method may
raise ``CodeError`` ``EUNAVAILABLE`` when the store does not confirm in time (the change is kept
and written later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ConnectionStore", "StoredConnection"]


@dataclass(frozen=True, slots=True)
class StoredConnection:
    """One connection as the store holds it."""

    id: str
    gateway_id: str
    metadata: Any = None
    auth: Any = None


class ConnectionStore(Protocol):
    """Durable copy of one ConnectionShard's slice."""

    async def register(
        self, connection_id: str, gateway_id: str, auth: bytes | None, metadata: bytes | None
    ) -> None:
        """Record a new connection (JSON-encoded auth data and initial metadata, when given)."""
        ...

    async def unregister(self, connection_id: str, gateway_id: str | None) -> None:
        """Forget a connection and everything stored under it."""
        ...

    async def forget_gateway(self, gateway_id: str) -> None:
        """Forget the per-gateway index of a dead gateway (after its connections were unregistered)."""
        ...

    async def set_metadata(self, connection_id: str, metadata: bytes) -> None:
        """Store a connection's JSON-encoded metadata."""
        ...

    async def load(self) -> list[StoredConnection]:
        """Every stored connection of this shard, in a stable order."""
        ...

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes; False if ``timeout`` elapsed first."""
        ...
