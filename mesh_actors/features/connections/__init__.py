"""Connections: who is connected where, their metadata and auth data (the ConnectionShard owners)."""

from __future__ import annotations

from .api import ConnectionManager, connection_id_of
from .kind import CONNECTIONS
from .shard import ConnectionShard, connection_not_found

__all__ = ["CONNECTIONS", "ConnectionManager", "ConnectionShard", "connection_id_of", "connection_not_found"]
