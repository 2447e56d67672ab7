"""``server.connection_manager``: connection metadata, auth data and lookups (spec §2.4).

Every call goes to the ConnectionShard that owns the connection, over the actor links, so the same
code works in one process and on a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..actors.connection_shard import connection_not_found
from ..actors.sharding import group_by_shard
from ..protocol.merge import MergeStrategy

if TYPE_CHECKING:
    from ..gateway.connection import Connection
    from .mesh_server import MeshServer

__all__ = ["ConnectionManager", "connection_id_of"]


def connection_id_of(connection: Any) -> str:
    """The id of a connection given as a handle or as its id."""
    if isinstance(connection, str):
        return connection
    connection_id = getattr(connection, "id", None)
    if not isinstance(connection_id, str):
        raise TypeError(f"expected a connection or a connection id, not {type(connection).__name__}")
    return connection_id


class ConnectionManager:
    """Connection-level operations of a :class:`MeshServer`."""

    def __init__(self, server: MeshServer) -> None:
        self._server = server

    def _shard(self, connection_id: str) -> Any:
        return self._server.directory.connection_shard(connection_id)

    async def _fan_in(self, method: str, ids: Sequence[str]) -> dict[str, Any]:
        """Call ``method(ids_of_shard)`` on each owning shard and merge the dict results."""
        shards = self._server.directory.connection_shards()
        groups = group_by_shard(ids, len(shards))
        results = await asyncio.gather(*(shards[i].call(method, group) for i, group in groups.items()))
        merged: dict[str, Any] = {}
        for result in results:
            merged.update(result)
        return merged

    async def get_metadata(self, connection: Connection | str) -> Any:
        """The connection's metadata (``None`` if unset)."""
        cid = connection_id_of(connection)
        return await self._shard(cid).call("get_metadata", cid)

    async def set_metadata(
        self, connection: Connection | str, value: Any, strategy: str | MergeStrategy = "replace"
    ) -> Any:
        """Set metadata with ``replace`` (default), ``merge`` or ``deepMerge``; returns the result.

        Raises ``CodeError`` ``ENOCONN`` if the connection does not exist.
        """
        cid = connection_id_of(connection)
        return await self._shard(cid).call("set_metadata", cid, value, str(MergeStrategy(strategy)))

    async def get_auth(self, connection: Connection | str) -> Any:
        """The server-only auth data of a connection (from ``authenticate_connection``)."""
        cid = connection_id_of(connection)
        return await self._shard(cid).call("get_auth", cid)

    async def exists(self, connection: Connection | str) -> bool:
        """True if the connection is registered anywhere in the deployment."""
        cid = connection_id_of(connection)
        return bool(await self._shard(cid).call("exists", cid))

    async def get_metadata_many(self, connection_ids: Iterable[str]) -> dict[str, Any]:
        """Metadata of many connections in one round trip per shard."""
        ids = list(connection_ids)
        return await self._fan_in("get_metadata_many", ids) if ids else {}

    async def locate(self, connection_ids: Iterable[str]) -> dict[str, str]:
        """The gateway id holding each known connection."""
        ids = list(connection_ids)
        return await self._fan_in("locate", ids) if ids else {}

    async def gateway_of(self, connection: Connection | str) -> str:
        """The gateway id holding the connection; ``ENOCONN`` if unknown."""
        cid = connection_id_of(connection)
        located = await self._shard(cid).call("locate", [cid])
        if cid not in located:
            raise connection_not_found(cid)
        return str(located[cid])

    async def rooms_of(self, connection: Connection | str) -> list[str]:
        """The rooms the connection is in."""
        cid = connection_id_of(connection)
        return list(await self._shard(cid).call("rooms_of", cid))

    async def get_all_connection_ids(self) -> list[str]:
        """Every connection id in the deployment, in connection order."""
        shards = self._server.directory.connection_shards()
        results = await asyncio.gather(*(shard.call("connections") for shard in shards))
        pairs = [pair for result in results for pair in result]
        pairs.sort(key=lambda pair: pair[1])
        return [cid for cid, _ in pairs]

    async def get_all_metadata(self) -> list[dict[str, Any]]:
        """``[{"id", "metadata"}]`` for every connection, in connection order."""
        ids = await self.get_all_connection_ids()
        metadata = await self.get_metadata_many(ids)
        return [{"id": cid, "metadata": metadata.get(cid)} for cid in ids]

    async def get_all_metadata_for_room(self, room: str) -> list[dict[str, Any]]:
        """``[{"id", "metadata"}]`` for the members of ``room``."""
        return await self._server.room_manager.get_members_with_metadata(room)

    def get_local_connections(self) -> list[Connection]:
        """Connections whose sockets this process holds."""
        gateway = self._server.local_gateway
        return list(gateway.connections.values()) if gateway else []

    def get_local_connection(self, connection_id: str) -> Connection | None:
        """The local connection with this id, if this process holds it."""
        gateway = self._server.local_gateway
        return gateway.connections.get(connection_id) if gateway else None

    async def require(self, connection: Connection | str) -> str:
        """The connection id, after checking that it exists (``ENOCONN`` otherwise)."""
        cid = connection_id_of(connection)
        if not await self.exists(cid):
            raise connection_not_found(cid)
        return cid
