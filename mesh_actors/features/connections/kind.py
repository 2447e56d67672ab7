"""The registration of the connection owners (docs/adding-a-feature.md)."""

from __future__ import annotations

from ...actors.registry import OwnerKind
from .redis import RedisConnectionStore
from .shard import ConnectionShard

__all__ = ["CONNECTIONS"]

CONNECTIONS: OwnerKind[ConnectionShard] = OwnerKind(
    name="connections",
    shards_setting="connection_shards",
    actor=ConnectionShard,
    store=RedisConnectionStore,
    sharded_by_connection=True,
)
"""Connection registry, metadata and auth data, sharded by connection id."""
