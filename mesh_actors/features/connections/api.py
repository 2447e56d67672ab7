"""``server.connection_manager``: connection metadata, auth data and lookups (docs/protocol.md#server-api).

Every call goes to the ConnectionShard that owns the connection, over the actor links, so the same
code works in one process and on a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ...actors.ref import ActorRef
from ...protocol.merge import MergeStrategy
from ..base import Client, Deployment
from .kind import CONNECTIONS
from .shard import ConnectionShard, connection_not_found

__all__ = ["ConnectionManager", "RoomLookups", "connection_id_of"]


class RoomLookups(Protocol):
    """The room queries the connection API answers too (the room part of the API has them)."""

    async def get_members_with_metadata(self, room: str) -> list[dict[str, Any]]: ...

    async def rooms_of(self, connection: Client | str) -> list[str]: ...


def connection_id_of(connection: Any) -> str:
    """The id of a connection given as a handle or as its id."""
    if isinstance(connection, str):
        return connection
    connection_id = getattr(connection, "id", None)
    if not isinstance(connection_id, str):
        raise TypeError(f"expected a connection or a connection id, not {type(connection).__name__}")
    return connection_id


class ConnectionManager:
    """Connection-level operations of the server API."""

    def __init__(self, deployment: Deployment, rooms: Callable[[], RoomLookups] | None = None) -> None:
        self._deployment = deployment
        self._rooms = rooms
        """The room part of the API, for the room lookups kept here for the reference's API
        (rooms are built on connections, so they are passed in rather than imported)."""

    def _room_lookups(self) -> RoomLookups:
        if self._rooms is None:
            raise RuntimeError("this connection manager has no room owners to ask")
        return self._rooms()

    def _owner(self, connection_id: str) -> ActorRef[ConnectionShard]:
        return self._deployment.directory.shard(CONNECTIONS, connection_id)

    async def _fan_in(self, ids: Iterable[str], *, locate: bool) -> dict[str, Any]:
        """Ask each owning shard about its ids in one call; merge the answers."""
        shards = self._deployment.directory.shards(CONNECTIONS)
        groups = CONNECTIONS.group(ids, len(shards))
        method = ConnectionShard.locate if locate else ConnectionShard.get_metadata_many
        results = await asyncio.gather(*(shards[i].call(method, group) for i, group in groups.items()))
        merged: dict[str, Any] = {}
        for result in results:
            merged.update(result)
        return merged

    async def register(self, connection_id: str, gateway_id: str, auth: Any = None) -> None:
        """Record a new connection of ``gateway_id`` (the gateway calls this at connect)."""
        await self._owner(connection_id).call(ConnectionShard.register, connection_id, gateway_id, auth)

    async def unregister(self, connection_id: str) -> bool:
        """Forget a connection (the gateway calls this at disconnect); True if it was known."""
        return bool(await self._owner(connection_id).call(ConnectionShard.unregister, connection_id))

    async def get_metadata(self, connection: Client | str) -> Any:
        """The connection's metadata (``None`` if unset)."""
        cid = connection_id_of(connection)
        return await self._owner(cid).call(ConnectionShard.get_metadata, cid)

    async def set_metadata(
        self, connection: Client | str, value: Any, strategy: str | MergeStrategy = "replace"
    ) -> Any:
        """Set metadata with ``replace`` (default), ``merge`` or ``deepMerge``; returns the result.

        Raises ``CodeError`` ``ENOCONN`` if the connection does not exist.
        """
        cid = connection_id_of(connection)
        return await self._owner(cid).call(
            ConnectionShard.set_metadata, cid, value, str(MergeStrategy(strategy))
        )

    async def get_auth(self, connection: Client | str) -> Any:
        """The server-only auth data of a connection (from ``authenticate_connection``)."""
        cid = connection_id_of(connection)
        return await self._owner(cid).call(ConnectionShard.get_auth, cid)

    async def exists(self, connection: Client | str) -> bool:
        """True if the connection is registered anywhere in the deployment."""
        cid = connection_id_of(connection)
        return bool(await self._owner(cid).call(ConnectionShard.exists, cid))

    async def get_metadata_many(self, connection_ids: Iterable[str]) -> dict[str, Any]:
        """Metadata of many connections in one round trip per shard."""
        ids = list(connection_ids)
        return await self._fan_in(ids, locate=False) if ids else {}

    async def locate(self, connection_ids: Iterable[str]) -> dict[str, str]:
        """The gateway id holding each known connection."""
        ids = list(connection_ids)
        return await self._fan_in(ids, locate=True) if ids else {}

    async def gateway_of(self, connection: Client | str) -> str:
        """The gateway id holding the connection; ``ENOCONN`` if unknown."""
        cid = connection_id_of(connection)
        located = await self._owner(cid).call(ConnectionShard.locate, [cid])
        if cid not in located:
            raise connection_not_found(cid)
        return str(located[cid])

    async def get_all_connection_ids(self) -> list[str]:
        """Every connection id in the deployment, in connection order."""
        shards = self._deployment.directory.shards(CONNECTIONS)
        results = await asyncio.gather(*(shard.call(ConnectionShard.connections) for shard in shards))
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
        return await self._room_lookups().get_members_with_metadata(room)

    async def rooms_of(self, connection: Client | str) -> list[str]:
        """The rooms the connection is in (asked of the room owners)."""
        return await self._room_lookups().rooms_of(connection)

    def get_local_connections(self) -> list[Any]:
        """Connections whose sockets this process holds."""
        return list(self._deployment.local_connections())
