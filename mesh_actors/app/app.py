"""The user's app as a plain value: commands, middleware, hooks, guards, authenticator, settings.

It holds no connections, sockets or runtime, so it pickles: the multi-process runtimes ship it to
every gateway process, each of which builds its own :class:`~.api.Api` around it. ``MeshServer``
(the facade) defines it at import time and runs it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from ..actors.registry import OwnerKind
from ..features import BUILTINS, KINDS
from ..protocol.dialect import Dialect
from ..settings import MeshSettings
from .auth import Authenticator
from .calls import call_user
from .commands import CommandRegistry, Handler, Middleware
from .guards import Guard, GuardTable, Pattern

__all__ = ["App", "Hook", "HookKind"]

logger = logging.getLogger(__name__)

Hook = Callable[[Any], Any | Awaitable[Any]]
"""``hook(connection)``, sync or async."""
HookKind = Literal["connection", "disconnection"]


class App:
    """Everything a Mesh app defines; see ``MeshServer`` for the methods users call."""

    def __init__(
        self,
        settings: MeshSettings,
        *,
        authenticator: Authenticator | None = None,
        kinds: Sequence[OwnerKind[Any]] = KINDS,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        """``authenticate_connection(request)``; see :mod:`.auth`."""
        self.kinds: tuple[OwnerKind[Any], ...] = tuple(kinds)
        """The owner kinds the runtimes start (``mesh_actors.features.KINDS``)."""
        self.commands = CommandRegistry()
        self.room_guards = GuardTable()
        self.hooks: dict[HookKind, list[Hook]] = {"connection": [], "disconnection": []}
        for suffix, handler in BUILTINS.items():
            for dialect in Dialect:
                self.commands.expose(dialect.name_of(suffix), handler)

    def with_settings(self, **changes: Any) -> App:
        """A copy of this app whose settings have ``changes`` applied (validated)."""
        clone = copy.copy(self)
        clone.settings = self.settings.updated(**changes)
        return clone

    # -- definition ------------------------------------------------------------------------------

    def expose_command(self, name: str, handler: Handler, middlewares: Iterable[Middleware] = ()) -> None:
        """Register (or replace) command ``name``."""
        self.commands.expose(name, handler, middlewares)

    def add_hook(self, kind: HookKind, hook: Hook) -> None:
        """Run ``hook(connection)`` on each connection or disconnection."""
        if not callable(hook):
            raise TypeError(f"hook {hook!r} is not callable")
        self.hooks[kind].append(hook)

    def guard_room(self, pattern: Pattern, guard: Guard | None = None) -> None:
        """Control which clients may join (and read the metadata of) rooms matching ``pattern``."""
        self.room_guards.add(pattern, guard)

    def user_callables(self) -> list[Any]:
        """Every function the app registered: handlers, middleware, hooks, guards, authenticator."""
        hooks = [hook for hooks in self.hooks.values() for hook in hooks]
        found = [*self.commands.callables(), *hooks, *self.room_guards.guards()]
        if self.authenticator is not None:
            found.append(self.authenticator)
        return found

    async def run_hooks(self, kind: HookKind, connection: Any) -> None:
        """Run the ``connection``/``disconnection`` hooks; an exception in one is logged only."""
        for hook in self.hooks[kind]:
            try:
                await call_user(hook, connection)
            except Exception:
                logger.exception("%s hook %r failed", kind, hook)
