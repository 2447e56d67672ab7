"""Start a coroutine at once and make a task of it only if it has to wait.

Why: most commands (echo, metadata reads served from memory, validation errors) finish without
ever waiting, and a task per command (creation, registration, a loop iteration to start it, a done
callback) was about a tenth of the echo profile. Python 3.12 has this built in
(``asyncio.eager_task_factory``); on 3.11 it is written here. The first step runs in a copy of the
current context, which the task then keeps, as an eager task would.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["start_eagerly", "step_eagerly"]

T = TypeVar("T")


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first suspends; None if it finished, else a task that continues it.

    An exception raised before the first suspension propagates to the caller.
    """
    return step_eagerly(coro)[1]


def step_eagerly(coro: Coroutine[Any, Any, T]) -> tuple[T | None, asyncio.Task[T] | None]:
    """Run ``coro`` until it first suspends: ``(result, None)`` if it finished, else
    ``(None, task)`` with a task that continues it and ends with its result.

    An exception raised before the first suspension propagates to the caller.
    """
    context = contextvars.copy_context()
    try:
        first = context.run(coro.send, None)
    except StopIteration as finished:
        return finished.value, None
    return None, asyncio.get_running_loop().create_task(_continue(coro, first), context=context)


async def _continue(coro: Coroutine[Any, Any, T], first: Any) -> T:
    return await _Resume(coro, first)


class _Resume(Generic[T]):
    """Awaitable that hands a started coroutine's pending future to the task, then drives it."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, T]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # cancellation included: the coroutine decides
                try:
                    value = coro.throw(error)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
