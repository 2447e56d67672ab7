"""``MeshServer``: the user's facade (docs/protocol.md#server-api), Pythonic names for the reference's.

Define the app at import time (commands, middleware, hooks, guards), then start it::

    server = MeshServer()

    @server.command("echo")
    async def echo(ctx):
        return ctx.payload

    server.serve()          # or: await server.start(); ...; await server.close()

A MeshServer is the app definition (:class:`~mesh_actors.app.App`, what multi-process runtimes
ship to their gateways), the server API (:class:`~mesh_actors.app.Api`, inherited: the same
methods work inside command handlers and from background tasks of the process) and the lifecycle
(start, serve, close). Nothing below this package imports it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ..app import Api, App
from ..app.auth import Authenticator
from ..app.commands import CommandRegistry, Handler, Middleware
from ..app.guards import Guard, GuardTable, Pattern
from ..runtime.inline import InlineRuntime
from ..settings import MeshSettings

__all__ = ["MeshServer", "run_forever"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

RUNTIMES = ("inline", "ray")


class MeshServer(Api):
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
        settings = settings if settings is not None else MeshSettings(**options)
        super().__init__(App(settings, authenticator=authenticate_connection))

    # -- app definition --------------------------------------------------------------------------

    @property
    def settings(self) -> MeshSettings:
        """The server's settings (replace them before start, e.g. ``server.configure(port=0)``)."""
        return self.app.settings

    @settings.setter
    def settings(self, settings: MeshSettings) -> None:
        if self._runtime is not None:
            raise RuntimeError("settings cannot change while the server runs")
        self.app.settings = settings

    def configure(self, **changes: Any) -> None:
        """Change settings before start (validated like the constructor's options)."""
        self.settings = self.settings.updated(**changes)

    @property
    def authenticator(self) -> Authenticator | None:
        """``authenticate_connection(request)``; see :mod:`mesh_actors.app.auth`."""
        return self.app.authenticator

    @property
    def commands(self) -> CommandRegistry:
        """The command registry (built-ins included)."""
        return self.app.commands

    @property
    def room_guards(self) -> GuardTable:
        """The room guards, in registration order."""
        return self.app.room_guards

    def expose_command(self, name: str, handler: Handler, middlewares: Iterable[Middleware] = ()) -> None:
        """Register (or replace) command ``name``; ``handler(ctx)`` returns the response payload."""
        self.app.expose_command(name, handler, middlewares)

    def command(self, name: str, middlewares: Iterable[Middleware] = ()) -> Callable[[F], F]:
        """Decorator form of :meth:`expose_command`."""

        def register(handler: F) -> F:
            self.expose_command(name, handler, middlewares)
            return handler

        return register

    def use_middleware(self, *middlewares: Middleware) -> None:
        """Run ``middleware(ctx)`` before every command (built-ins too); raising aborts it."""
        self.app.commands.use(*middlewares)

    def use_middleware_with_command(self, name: str, middlewares: Iterable[Middleware]) -> None:
        """Add middleware to one command (a later call's middleware runs first, as in Mesh)."""
        self.app.commands.use_for(name, middlewares)

    def on_connection(self, hook: F) -> F:
        """Call ``hook(connection)`` after a client connected (after its assign-id frame)."""
        self.app.add_hook("connection", hook)
        return hook

    def on_disconnection(self, hook: F) -> F:
        """Call ``hook(connection)`` after a client disconnected and its state was cleaned up."""
        self.app.add_hook("disconnection", hook)
        return hook

    def guard_room(self, pattern: Pattern, guard: Guard | None = None) -> None:
        """Control which clients may join (and read the metadata of) rooms matching ``pattern``.

        ``pattern`` is an exact name or a compiled regex; ``guard(connection, room)`` returns a bool
        (or awaitable). The first matching pattern decides. Rooms matching no pattern are open,
        unless ``rooms_require_guard`` is set. Server-side ``add_to_room`` is never guarded.
        """
        self.app.guard_room(pattern, guard)

    def user_callables(self) -> list[Any]:
        """Every function the app registered: handlers, middleware, hooks, guards, authenticator."""
        return self.app.user_callables()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Start the inline runtime and listen (defaults: ``settings.host``/``settings.port``)."""
        if self._runtime is not None:
            raise RuntimeError("server already started")
        runtime = InlineRuntime(self)
        self.bind(runtime)
        try:
            await runtime.start(host or self.settings.host, self.settings.port if port is None else port)
        except BaseException:
            self.unbind()
            await runtime.close()
            raise

    async def close(self) -> None:
        """Close every connection (code 1001), flush state to Redis, release resources."""
        runtime = self._runtime
        if runtime is not None:
            try:
                await runtime.close()
            finally:
                self.unbind()

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
        :class:`~mesh_actors.runtime.ray.RayDeployment` (``address``, ``gateways``, ...).
        ``on_ready(server)`` runs once clients can connect (the CLI prints the address there).
        """
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}: use 'inline' or 'ray'")
        if ray_options and runtime != "ray":
            raise TypeError(f"options {sorted(ray_options)} only apply to runtime='ray'")

        async def main() -> None:
            if runtime == "ray":
                await self.deploy_on_ray(host=host, port=port, **ray_options)
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

    async def deploy_on_ray(self, **options: Any) -> Any:
        """Deploy this app on Ray (``RayDeployment`` options); this server becomes its handle."""
        # Imported here: Ray is an optional extra, and importing it costs about a second.
        from ..runtime.ray import RayDeployment

        deployment = RayDeployment(self, **options)
        await deployment.start()
        return deployment


def run_forever(main: Awaitable[None]) -> None:
    """Run a coroutine on uvloop when available (faster), else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
