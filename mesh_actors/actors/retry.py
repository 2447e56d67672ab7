"""Retrying an actor call while its owner is briefly unreachable (a shard restarting)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..protocol.backoff import Backoff
from ..protocol.errors import CodeError, ErrorCode

__all__ = ["UNAVAILABLE_BACKOFF", "retry_unavailable"]

T = TypeVar("T")

UNAVAILABLE_BACKOFF = Backoff(initial=0.05, maximum=2.0, multiplier=2.0, jitter=0.0)
"""Delays between attempts: 50 ms doubling up to 2 s."""


async def retry_unavailable(
    operation: Callable[[], Awaitable[T]],
    *,
    window: float = 15.0,
    backoff: Backoff = UNAVAILABLE_BACKOFF,
) -> T:
    """Run ``operation`` until it does not fail with ``EUNAVAILABLE``, for at most ``window`` s.

    Only for operations that are safe to repeat (idempotent clean-ups); any other error, or
    ``EUNAVAILABLE`` after the window, propagates.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    attempt = 0
    while True:
        try:
            return await operation()
        except CodeError as error:
            attempt += 1
            if error.code != ErrorCode.UNAVAILABLE or loop.time() >= deadline:
                raise
            await asyncio.sleep(min(backoff.delay(attempt), max(0.0, deadline - loop.time())))
