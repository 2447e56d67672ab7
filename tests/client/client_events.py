"""Helpers for waiting on client events in tests (never sleep to synchronize)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mesh_actors.client import MeshClient

__all__ = ["ClientFactory", "expect", "record"]

ClientFactory = Callable[..., MeshClient]
"""The ``make_client`` fixture: ``make_client(url, **options)``."""


def expect(client: MeshClient, event: str) -> asyncio.Future[Any]:
    """A future of the next ``event`` (its single argument, or ``None``). Registered at once, so
    call it *before* the action that triggers the event, then ``await asyncio.wait_for(...)``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def callback(*args: Any) -> None:
        if not future.done():
            future.set_result(args[0] if args else None)

    unsubscribe = client.on(event, callback)
    future.add_done_callback(lambda _: unsubscribe())
    return future


def record(client: MeshClient, *events: str) -> list[tuple[str, Any]]:
    """A list that receives ``(event, argument)`` for every emission of ``events``, in order."""
    log: list[tuple[str, Any]] = []
    for event in events:
        client.on(event, lambda *args, event=event: log.append((event, args[0] if args else None)))
    return log
