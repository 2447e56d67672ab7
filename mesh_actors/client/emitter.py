"""A small event emitter: named events, sync or async callbacks, isolated failures.

A callback that raises must not break the client (it runs inside the read loop), so exceptions
are logged and swallowed. Coroutine callbacks run as tasks: emitting never waits for user code.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EventEmitter", "Listener"]

logger = logging.getLogger("mesh_actors.client")

Listener = Callable[..., Any]
"""An event callback: a function or a coroutine function, called with the event's arguments."""


class EventEmitter:
    """Maps event names to callbacks."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, event: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` on every ``event``; returns a function that unsubscribes it.

        Registering the same callback twice calls it twice; each unsubscribe removes one.
        """
        self._listeners.setdefault(event, []).append(callback)
        removed = False

        def unsubscribe() -> None:
            nonlocal removed
            if removed:
                return
            removed = True
            listeners = self._listeners.get(event)
            if listeners is not None:
                listeners.remove(callback)
                if not listeners:
                    del self._listeners[event]

        return unsubscribe

    def listener_count(self, event: str) -> int:
        """How many callbacks are registered for ``event``."""
        return len(self._listeners.get(event, ()))

    def emit(self, event: str, *args: Any) -> None:
        """Call every callback of ``event`` with ``args``, in registration order."""
        listeners = self._listeners.get(event)
        if not listeners:
            return
        for callback in tuple(listeners):  # a callback may unsubscribe while we iterate
            try:
                result = callback(*args)
            except Exception:
                logger.exception("Error in %r event callback %r", event, callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._finished, event))

    def _finished(self, event: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Error in %r event callback", event, exc_info=task.exception())
