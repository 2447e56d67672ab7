"""``MeshServer``: the user-facing server API (spec §2), Pythonic names for the reference's.

Define the app at import time (commands, middleware, hooks, guards), then start it::

    server = MeshServer()

    @server.command("echo")
    async def echo(ctx):
        return ctx.payload

    server.serve()          # or: await server.start(); ...; await server.close()

The same methods work inside command handlers and from background tasks of the process; they go
over the actor links to the shard that owns the state.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..protocol.frames import encode_push
from .auth import Authenticator
from .builtins import register_builtins
from .commands import CommandRegistry, Handler, Middleware
from .connections import ConnectionManager, connection_id_of
from .guards import Guard, GuardTable, Pattern
from .rooms import RoomManager
from .settings import MeshSettings

if TYPE_CHECKING:
    from ..actors.links import Directory
    from ..gateway.connection import Connection
    from ..gateway.gateway import Gateway

__all__ = ["MeshServer"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[["Connection"], Any | Awaitable[Any]]


class Runtime(Protocol):
    """What a server runs on: links to the deployment's actors, and this process's gateway if any."""

    @property
    def directory(self) -> Directory: ...

    @property
    def gateway(self) -> Gateway | None: ...

    async def close(self) -> None: ...


class MeshServer:
    """A Mesh server: commands, rooms, metadata and broadcasts over WebSockets."""

    def __init__(
        self,
        settings: MeshSettings | None = None,
        *,
        authenticate_connection: Authenticator | None = None,
        **options: Any,
    ) -> None:
        """Create a server. ``options`` are :class:`MeshSettings` fields (e.g. ``ping_interval=10``);
        fields not given come from ``MESH_*`` environment variables, then the defaults."""
        if settings is not None and options:
            raise TypeError("pass either settings or keyword options, not both")
        self.settings = settings if settings is not None else MeshSettings(**options)
        self.authenticator = authenticate_connection
        """``authenticate_connection(request)``; see :mod:`mesh_actors.server.auth`."""
        self.commands = CommandRegistry()
        self.room_guards = GuardTable()
        self.connection_manager = ConnectionManager(self)
        self.room_manager = RoomManager(self)
        self._hooks: dict[str, list[Hook]] = {"connection": [], "disconnection": []}
        self._runtime: Runtime | None = None
        register_builtins(self)

    # -- app definition --------------------------------------------------------------------------

    def expose_command(self, name: str, handler: Handler, middlewares: Iterable[Middleware] = ()) -> None:
        """Register (or replace) command ``name``; ``handler(ctx)`` returns the response payload."""
        self.commands.expose(name, handler, middlewares)

    def command(self, name: str, middlewares: Iterable[Middleware] = ()) -> Callable[[F], F]:
        """Decorator form of :meth:`expose_command`."""

        def register(handler: F) -> F:
            self.expose_command(name, handler, middlewares)
            return handler

        return register

    def use_middleware(self, *middlewares: Middleware) -> None:
        """Run ``middleware(ctx)`` before every command (built-ins too); raising aborts it."""
        self.commands.use(*middlewares)

    def use_middleware_with_command(self, name: str, middlewares: Iterable[Middleware]) -> None:
        """Add middleware to one command (a later call's middleware runs first, as in Mesh)."""
        self.commands.use_for(name, middlewares)

    def on_connection(self, hook: F) -> F:
        """Call ``hook(connection)`` after a client connected (after its assign-id frame)."""
        self._hooks["connection"].append(hook)
        return hook

    def on_disconnection(self, hook: F) -> F:
        """Call ``hook(connection)`` after a client disconnected and its state was cleaned up."""
        self._hooks["disconnection"].append(hook)
        return hook

    def guard_room(self, pattern: Pattern, guard: Guard | None = None) -> None:
        """Control which clients may join (and read the metadata of) rooms matching ``pattern``.

        ``pattern`` is an exact name or a compiled regex; ``guard(connection, room)`` returns a bool
        (or awaitable). The first matching pattern decides. Rooms matching no pattern are open,
        unless ``rooms_require_guard`` is set. Server-side ``add_to_room`` is never guarded.
        """
        self.room_guards.add(pattern, guard)

    def user_callables(self) -> list[Any]:
        """Every function the app registered: handlers, middleware, hooks, guards, authenticator."""
        hooks = [hook for hooks in self._hooks.values() for hook in hooks]
        found = [*self.commands.callables(), *hooks, *self.room_guards.guards()]
        if self.authenticator is not None:
            found.append(self.authenticator)
        return found

    async def run_hooks(self, kind: str, connection: Connection) -> None:
        """Run the ``connection``/``disconnection`` hooks; an exception in one is logged only."""
        for hook in self._hooks[kind]:
            try:
                result = hook(connection)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s hook %r failed", kind, hook)

    # -- policy used by the built-ins ------------------------------------------------------------

    async def may_use_room(self, connection: Connection, room: str) -> bool:
        """Whether a client connection may join ``room`` or read its metadata."""
        return await self.room_guards.allows(connection, room, default=not self.settings.rooms_require_guard)

    async def may_read_metadata(self, reader_id: str, target_id: str) -> bool:
        """Whether connection ``reader_id`` may read the metadata of ``target_id``."""
        policy = self.settings.connection_metadata_read
        if policy == "any" or reader_id == target_id:
            return True
        if policy == "self":
            return False
        mine, theirs = await asyncio.gather(
            self.connection_manager.rooms_of(reader_id), self.connection_manager.rooms_of(target_id)
        )
        return not set(mine).isdisjoint(theirs)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Start the inline runtime and listen (defaults: ``settings.host``/``settings.port``)."""
        if self._runtime is not None:
            raise RuntimeError("server already started")
        from ..runtime.inline import InlineRuntime  # the runtime imports the gateway: keep it lazy

        runtime = InlineRuntime(self)
        self._runtime = runtime
        try:
            await runtime.start(host or self.settings.host, self.settings.port if port is None else port)
        except BaseException:
            self._runtime = None
            await runtime.close()
            raise

    def attach(self, runtime: Runtime) -> None:
        """Run on ``runtime`` (used by the Ray runtime for its gateways and for client handles)."""
        if self._runtime is not None:
            raise RuntimeError("server already started")
        self._runtime = runtime

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to gateway processes without its runtime: each process attaches its own.
        state = self.__dict__.copy()
        state["_runtime"] = None
        return state

    async def close(self) -> None:
        """Close every connection (code 1001), flush state to Redis, release resources."""
        runtime = self._runtime
        if runtime is not None:
            try:
                await runtime.close()
            finally:
                self._runtime = None

    async def __aenter__(self) -> MeshServer:
        """``async with MeshServer(port=0) as server:`` starts it and closes it on exit."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def serve(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        runtime: str = "inline",
        on_ready: Callable[[MeshServer], Any] | None = None,
        **ray_options: Any,
    ) -> None:
        """Run until SIGINT/SIGTERM (blocking), on uvloop when it is installed.

        ``runtime="inline"`` serves from this process. ``runtime="ray"`` deploys on Ray and
        supervises the deployment from this process; ``ray_options`` are those of
        :class:`~mesh_actors.runtime.ray.RayDeployment` (``address``, ``gateways``,
        ``room_shards``, ``connection_shards``). ``on_ready(server)`` runs once clients can
        connect (the CLI prints the address there).
        """
        if runtime not in ("inline", "ray"):
            raise ValueError(f"unknown runtime {runtime!r}: use 'inline' or 'ray'")
        if ray_options and runtime != "ray":
            raise TypeError(f"options {sorted(ray_options)} only apply to runtime='ray'")

        async def main() -> None:
            if runtime == "ray":
                from ..runtime.ray import RayDeployment  # optional extra: import only when used

                await RayDeployment(self, host=host, port=port, **ray_options).start()
            else:
                await self.start(host, port)
            # Installed after the start: ray.init installs its own SIGTERM handler, which would
            # kill the driver without draining the gateways.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            logger.debug("mesh-actors listening on port %s", self.port)
            if on_ready is not None:
                on_ready(self)
            try:
                await stop.wait()
            finally:
                await self.close()

        run_forever(main())

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
    def local_gateway(self) -> Gateway | None:
        """The gateway of this process, if any."""
        return self._runtime.gateway if self._runtime is not None else None

    @property
    def port(self) -> int:
        """The bound port (shared by every gateway of a Ray deployment)."""
        gateway = self.local_gateway
        if gateway is not None:
            return gateway.port
        port = getattr(self._runtime, "port", None)
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

    # -- rooms (server-side; never guarded) ------------------------------------------------------

    async def add_to_room(self, room: str, connection: Connection | str) -> list[str]:
        """Add a connection to a room; returns the member ids."""
        return await self.room_manager.add(room, connection)

    async def remove_from_room(self, room: str, connection: Connection | str) -> bool:
        """Remove a connection from a room; True if it was a member."""
        return await self.room_manager.remove(room, connection)

    async def remove_from_all_rooms(self, connection: Connection | str) -> list[str]:
        """Remove a connection from all its rooms; returns them."""
        return await self.room_manager.remove_from_all(connection)

    async def is_in_room(self, room: str, connection: Connection | str) -> bool:
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

    async def get_connection_metadata(self, connection: Connection | str) -> Any:
        """A connection's metadata."""
        return await self.connection_manager.get_metadata(connection)

    async def set_connection_metadata(
        self, connection: Connection | str, value: Any, strategy: str = "replace"
    ) -> Any:
        """Set a connection's metadata (``replace``/``merge``/``deepMerge``); returns it."""
        return await self.connection_manager.set_metadata(connection, value, strategy)

    # -- broadcasting ----------------------------------------------------------------------------

    async def broadcast(
        self, command: str, payload: Any = None, connections: Iterable[Connection | str] | None = None
    ) -> int:
        """Push ``{command, payload}`` to every connection, or to the given ones; returns the count."""
        encoded = encode_push(command, payload)
        if connections is None:
            return await self._deliver_everywhere(encoded, ())
        return await self._deliver_to([connection_id_of(c) for c in connections], encoded)

    async def broadcast_exclude(
        self, command: str, payload: Any, exclude: Connection | str | Iterable[Connection | str]
    ) -> int:
        """Push to every connection except ``exclude``."""
        return await self._deliver_everywhere(encode_push(command, payload), _ids(exclude))

    async def broadcast_room(self, room: str, command: str, payload: Any = None) -> int:
        """Push to every member of ``room``; returns the count."""
        return await self.room_manager.broadcast(room, encode_push(command, payload))

    async def broadcast_room_exclude(
        self, room: str, command: str, payload: Any, exclude: Connection | str | Iterable[Connection | str]
    ) -> int:
        """Push to the members of ``room`` except ``exclude``."""
        return await self.room_manager.broadcast(room, encode_push(command, payload), _ids(exclude))

    async def send_to(
        self, connections: Connection | str | Iterable[Connection | str], command: str, payload: Any = None
    ) -> int:
        """Push to specific connections, wherever they are connected; returns the count found."""
        return await self._deliver_to(list(_ids(connections)), encode_push(command, payload))

    async def _deliver_everywhere(self, encoded: bytes, exclude: Collection[str]) -> int:
        gateways = self.directory.gateways()
        counts = await asyncio.gather(
            *(gateway.call("deliver", encoded, None, tuple(exclude)) for gateway in gateways),
            return_exceptions=True,
        )
        return _sum_counts(counts)

    async def _deliver_to(self, connection_ids: list[str], encoded: bytes) -> int:
        located = await self.connection_manager.locate(connection_ids)
        by_gateway: dict[str, list[str]] = {}
        for cid, gateway_id in located.items():
            by_gateway.setdefault(gateway_id, []).append(cid)
        calls = []
        for gateway_id, ids in by_gateway.items():
            gateway = self.directory.gateway(gateway_id)
            if gateway is not None:
                calls.append(gateway.call("deliver", encoded, tuple(ids)))
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


def _ids(connections: Connection | str | Iterable[Connection | str]) -> frozenset[str]:
    if isinstance(connections, str) or hasattr(connections, "id"):
        return frozenset({connection_id_of(connections)})
    return frozenset(connection_id_of(c) for c in connections)  # type: ignore[union-attr]


def run_forever(main: Awaitable[None]) -> None:
    """Run a coroutine on uvloop when available (faster), else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
