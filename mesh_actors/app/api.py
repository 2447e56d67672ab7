"""The server API (docs/protocol.md#server-api): what handlers reach as ``ctx.server``.

:class:`Api` implements every server method over the running deployment's directory. Each
process that runs a gateway has one around the app it serves; ``MeshServer`` (the user's facade)
is one too, so the same methods work inside handlers, in background tasks and in the driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..actors.ref import ActorRef, Directory, GatewayActor
from ..features.base import Client
from ..features.connections import ConnectionManager, connection_id_of
from ..features.rooms import RoomManager
from ..protocol.messages import encode_push
from ..settings import MeshSettings
from .app import App

__all__ = ["Api", "LocalGateway", "Runtime"]

logger = logging.getLogger(__name__)


class LocalGateway(Protocol):
    """The gateway of this process, as the API sees it."""

    @property
    def id(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def connections(self) -> Mapping[str, Any]: ...


class Runtime(Protocol):
    """What an API runs on: links to the deployment's actors, and this process's gateway if any."""

    @property
    def directory(self) -> Directory: ...

    @property
    def gateway(self) -> LocalGateway | None: ...

    @property
    def port(self) -> int | None: ...

    async def close(self) -> None: ...


class Api:
    """The server API of one app, bound to a runtime once it runs."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.connection_manager = ConnectionManager(self, lambda: self.room_manager)
        self.room_manager = RoomManager(self, self.connection_manager)
        self._runtime: Runtime | None = None

    # -- binding ---------------------------------------------------------------------------------

    def bind(self, runtime: Runtime) -> None:
        """Run on ``runtime`` (each runtime binds the API of every process it starts)."""
        if self._runtime is not None:
            raise RuntimeError("server already started")
        self._runtime = runtime

    def unbind(self) -> Runtime | None:
        """Forget the runtime (after it closed); returns it."""
        runtime, self._runtime = self._runtime, None
        return runtime

    @property
    def settings(self) -> MeshSettings:
        """The app's settings."""
        return self.app.settings

    @property
    def runtime(self) -> Runtime:
        """The running runtime (raises if the server is not started)."""
        if self._runtime is None:
            raise RuntimeError("the server is not started: call await server.start() first")
        return self._runtime

    @property
    def directory(self) -> Directory:
        """Links to the shards and gateways of the deployment."""
        return self.runtime.directory

    @property
    def local_gateway(self) -> LocalGateway | None:
        """The gateway of this process, if any."""
        return self._runtime.gateway if self._runtime is not None else None

    def local_connections(self) -> Sequence[Any]:
        """Connections whose sockets this process holds."""
        gateway = self.local_gateway
        return list(gateway.connections.values()) if gateway else []

    @property
    def port(self) -> int:
        """The bound port (shared by every gateway of a multi-process deployment)."""
        gateway = self.local_gateway
        if gateway is not None:
            return gateway.port
        port = self._runtime.port if self._runtime is not None else None
        if port is None:
            raise RuntimeError("the server is not started")
        return int(port)

    @property
    def instance_id(self) -> str:
        """Id of this process's gateway (the reference's instance id)."""
        gateway = self.local_gateway
        if gateway is None:
            raise RuntimeError("the server is not started")
        return gateway.id

    @property
    def connection_count(self) -> int:
        """Connections held by this process."""
        gateway = self.local_gateway
        return len(gateway.connections) if gateway else 0

    async def total_connection_count(self) -> int:
        """Connections in the whole deployment."""
        return len(await self.connection_manager.get_all_connection_ids())

    # -- policy used by the built-ins ------------------------------------------------------------

    async def may_use_room(self, connection: Client, room: str) -> bool:
        """Whether a client connection may join ``room`` or read its metadata."""
        default = not self.settings.rooms_require_guard
        return await self.app.room_guards.allows(connection, room, default=default)

    async def may_read_metadata(self, reader_id: str, target_id: str) -> bool:
        """Whether connection ``reader_id`` may read the metadata of ``target_id``."""
        policy = self.settings.connection_metadata_read
        if policy == "any" or reader_id == target_id:
            return True
        if policy == "self":
            return False
        mine, theirs = await asyncio.gather(
            self.room_manager.rooms_of(reader_id), self.room_manager.rooms_of(target_id)
        )
        return not set(mine).isdisjoint(theirs)

    # -- rooms (server-side; never guarded) ------------------------------------------------------

    async def add_to_room(self, room: str, connection: Client | str) -> list[str]:
        """Add a connection to a room; returns the member ids."""
        return await self.room_manager.add(room, connection)

    async def remove_from_room(self, room: str, connection: Client | str) -> bool:
        """Remove a connection from a room; True if it was a member."""
        return await self.room_manager.remove(room, connection)

    async def remove_from_all_rooms(self, connection: Client | str) -> list[str]:
        """Remove a connection from all its rooms; returns them."""
        return await self.room_manager.remove_from_all(connection)

    async def is_in_room(self, room: str, connection: Client | str) -> bool:
        """True if the connection is in the room."""
        return await self.room_manager.is_in(room, connection)

    async def get_room_members(self, room: str) -> list[str]:
        """Member ids of a room."""
        return await self.room_manager.get_members(room)

    async def get_room_members_with_metadata(self, room: str) -> list[dict[str, Any]]:
        """``[{"id", "metadata"}]`` of a room's members."""
        return await self.room_manager.get_members_with_metadata(room)

    async def get_all_rooms(self) -> list[str]:
        """Every room with members."""
        return await self.room_manager.get_all_rooms()

    async def clear_room(self, room: str) -> list[str]:
        """Remove all members (metadata kept)."""
        return await self.room_manager.clear(room)

    async def delete_room(self, room: str) -> list[str]:
        """Remove all members and the metadata."""
        return await self.room_manager.delete(room)

    # -- connection metadata ---------------------------------------------------------------------

    async def get_connection_metadata(self, connection: Client | str) -> Any:
        """A connection's metadata."""
        return await self.connection_manager.get_metadata(connection)

    async def set_connection_metadata(
        self, connection: Client | str, value: Any, strategy: str = "replace"
    ) -> Any:
        """Set a connection's metadata (``replace``/``merge``/``deepMerge``); returns it."""
        return await self.connection_manager.set_metadata(connection, value, strategy)

    # -- broadcasting ----------------------------------------------------------------------------

    async def broadcast(
        self, command: str, payload: Any = None, connections: Iterable[Client | str] | None = None
    ) -> int:
        """Push ``{command, payload}`` to every connection, or to the given ones; returns the count."""
        message = encode_push(command, payload)
        if connections is None:
            return await self._deliver_everywhere(message, ())
        return await self._deliver_to([connection_id_of(c) for c in connections], message)

    async def broadcast_exclude(
        self, command: str, payload: Any, exclude: Client | str | Iterable[Client | str]
    ) -> int:
        """Push to every connection except ``exclude``."""
        return await self._deliver_everywhere(encode_push(command, payload), _ids(exclude))

    async def broadcast_room(self, room: str, command: str, payload: Any = None) -> int:
        """Push to every member of ``room``; returns the count."""
        return await self.room_manager.broadcast(room, encode_push(command, payload))

    async def broadcast_room_exclude(
        self, room: str, command: str, payload: Any, exclude: Client | str | Iterable[Client | str]
    ) -> int:
        """Push to the members of ``room`` except ``exclude``."""
        return await self.room_manager.broadcast(room, encode_push(command, payload), _ids(exclude))

    async def send_to(
        self, connections: Client | str | Iterable[Client | str], command: str, payload: Any = None
    ) -> int:
        """Push to specific connections, wherever they are connected; returns the count found."""
        return await self._deliver_to(list(_ids(connections)), encode_push(command, payload))

    async def _deliver_everywhere(self, message: bytes, exclude: Collection[str]) -> int:
        gateways = self.directory.gateways()
        counts = await asyncio.gather(
            *(gateway.call(GatewayActor.deliver, message, None, tuple(exclude)) for gateway in gateways),
            return_exceptions=True,
        )
        return _sum_counts(counts)

    async def _deliver_to(self, connection_ids: list[str], message: bytes) -> int:
        located = await self.connection_manager.locate(connection_ids)
        by_gateway: dict[str, list[str]] = {}
        for cid, gateway_id in located.items():
            by_gateway.setdefault(gateway_id, []).append(cid)
        calls = []
        for gateway_id, ids in by_gateway.items():
            gateway: ActorRef[GatewayActor] | None = self.directory.gateway(gateway_id)
            if gateway is not None:
                calls.append(gateway.call(GatewayActor.deliver, message, tuple(ids)))
        return _sum_counts(await asyncio.gather(*calls, return_exceptions=True))


def _sum_counts(results: Iterable[Any]) -> int:
    """Sum the delivery counts of the gateways that answered; log the ones that failed."""
    total = 0
    for result in results:
        if isinstance(result, BaseException):
            logger.warning("a gateway could not deliver a broadcast: %s", result)
        else:
            total += int(result)
    return total


def _ids(connections: Client | str | Iterable[Client | str]) -> frozenset[str]:
    if isinstance(connections, str) or hasattr(connections, "id"):
        return frozenset({connection_id_of(connections)})
    return frozenset(connection_id_of(c) for c in connections)
