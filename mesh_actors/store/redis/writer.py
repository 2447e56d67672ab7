"""Ordered, batched Redis writes for one actor, that survive a Redis outage.

An actor changes its in-memory state first and then persists the change. Writes go through one
:class:`OrderedWriter` per actor so that they reach Redis in the order the actor made them (a pool
of connections could reorder two awaits) and so that the writes of one event-loop tick travel in
one pipeline round trip.

When Redis cannot be reached, the batch stays at the head of the queue and is retried with
backoff until it is written: the actor's state and Redis converge when Redis returns. A caller
waits at most ``persist_timeout`` for its write and then gets ``EUNAVAILABLE`` (its change is kept
and will be written later), so a command never hangs on a Redis outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...actors.retry import UNAVAILABLE_BACKOFF
from ...protocol.errors import CodeError, unavailable

__all__ = ["OrderedWriter", "storage_unavailable"]

logger = logging.getLogger(__name__)

Op = tuple[Any, ...]

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


def storage_unavailable() -> CodeError:
    """The error of a write that Redis did not confirm in time (it will be retried)."""
    return unavailable(
        "Storage unavailable: the change is kept and will be written when Redis is back", "StorageError"
    )


def _consume_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class OrderedWriter:
    """Queues Redis commands and executes them in order, one pipeline per batch."""

    def __init__(self, redis: Redis, *, persist_timeout: float = 5.0) -> None:
        self._redis = redis
        self._persist_timeout = persist_timeout
        self._pending: list[tuple[Sequence[Op], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.failing = False
        """True while Redis is unreachable (writes are queued and retried)."""

    async def write(self, *ops: Op) -> None:
        """Persist ``ops`` (each a Redis command as a tuple) after every earlier write."""
        if not ops:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even if the caller was cancelled or timed out.
        future.add_done_callback(_consume_outcome)
        self._pending.append((ops, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_loop())
        try:
            # Shield: a cancelled caller must not cancel a batch that carries other writes.
            await asyncio.wait_for(asyncio.shield(future), self._persist_timeout)
        except TimeoutError:
            raise storage_unavailable() from None

    async def _flush_loop(self) -> None:
        attempt = 0
        try:
            while self._pending:
                batch = list(self._pending)
                try:
                    results = await self._execute(batch)
                except _TRANSIENT as error:
                    if not self.failing:
                        logger.warning("Redis unreachable, retrying queued writes: %s", error)
                    self.failing = True
                    attempt += 1
                    await asyncio.sleep(UNAVAILABLE_BACKOFF.delay(attempt))
                    continue
                if self.failing:
                    logger.warning("Redis is back; queued writes flushed")
                self.failing = False
                attempt = 0
                del self._pending[: len(batch)]
                for result in results:
                    if isinstance(result, Exception):
                        # A command Redis refused (e.g. WRONGTYPE): retrying cannot help.
                        logger.error("Redis refused a write: %s", result)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flushing = None

    async def _execute(self, batch: list[tuple[Sequence[Op], asyncio.Future[None]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for ops, _ in batch:
                for op in ops:
                    pipe.execute_command(*op)
            return list(await pipe.execute(raise_on_error=False))

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is in Redis; False if ``timeout`` elapsed first."""
        try:
            async with asyncio.timeout(timeout):
                while self._flushing is not None:
                    await asyncio.shield(self._flushing)
        except TimeoutError:
            return False
        return True
