"""Ordered, batched Redis writes for one actor.

An actor changes its in-memory state first and then persists the change. Writes go through one
:class:`OrderedWriter` per actor so that they reach Redis in the order the actor made them (a pool
of connections could reorder two awaits) and so that the writes of one event-loop tick travel in
one pipeline round trip. Callers await the flush that carries their writes, so a command is only
answered after its change is durable, and a Redis outage surfaces as an error to that caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

__all__ = ["OrderedWriter"]

Op = tuple[Any, ...]


def _consume_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class OrderedWriter:
    """Queues Redis commands and executes them in order, one pipeline per batch."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[Sequence[Op], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, *ops: Op) -> None:
        """Persist ``ops`` (each a Redis command as a tuple) after every earlier write."""
        if not ops:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even if the caller was cancelled and never looks at it.
        future.add_done_callback(_consume_outcome)
        self._pending.append((ops, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_loop())
        # Shield: a cancelled caller must not cancel a batch that carries other callers' writes.
        await asyncio.shield(future)

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for ops, _ in batch:
                            for op in ops:
                                pipe.execute_command(*op)
                        await pipe.execute()
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = None

    async def drain(self) -> None:
        """Wait until every queued write has been attempted."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
