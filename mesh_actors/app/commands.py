"""The command registry: handlers, global middleware and per-command middleware.

See docs/protocol.md#commands-and-middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .context import Context

__all__ = ["CommandRegistry", "Handler", "Middleware"]

Handler = Callable[[Context], Any | Awaitable[Any]]
Middleware = Callable[[Context], Any | Awaitable[Any]]


class CommandRegistry:
    """Name -> handler, plus the middleware that runs before it.

    Order for one request: global middleware (registration order), then the command's own
    middleware, then the handler.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._middleware: dict[str, list[Middleware]] = {}
        self.global_middleware: list[Middleware] = []

    def expose(self, name: str, handler: Handler, middlewares: Iterable[Middleware] = ()) -> None:
        """Register or replace ``name``; earlier per-command middleware is kept."""
        if not isinstance(name, str) or not name:
            raise ValueError("a command name must be a non-empty string")
        if not callable(handler):
            raise TypeError(f"handler for {name!r} is not callable")
        self._handlers[name] = handler
        middlewares = list(middlewares)
        if middlewares:
            self.use_for(name, middlewares)

    def use(self, *middlewares: Middleware) -> None:
        """Append global middleware (runs for every command, built-ins included)."""
        for middleware in middlewares:
            if not callable(middleware):
                raise TypeError(f"middleware {middleware!r} is not callable")
        self.global_middleware.extend(middlewares)

    def use_for(self, name: str, middlewares: Iterable[Middleware]) -> None:
        """Add middleware to one command. Like the reference, a later call's list runs first."""
        middlewares = list(middlewares)
        for middleware in middlewares:
            if not callable(middleware):
                raise TypeError(f"middleware {middleware!r} is not callable")
        self._middleware[name] = middlewares + self._middleware.get(name, [])

    def lookup(self, name: str) -> tuple[Handler, list[Middleware]] | None:
        """The handler of ``name`` and its own middleware, or ``None`` if unknown."""
        handler = self._handlers.get(name)
        if handler is None:
            return None
        return handler, self._middleware.get(name, [])

    def callables(self) -> list[Any]:
        """Every handler and middleware (the Ray runtime ships them to the gateways)."""
        own = [fn for fns in self._middleware.values() for fn in fns]
        return [*self._handlers.values(), *own, *self.global_middleware]

    def names(self) -> list[str]:
        """Every registered command name."""
        return list(self._handlers)
