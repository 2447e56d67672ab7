"""Calling user code that may be sync or async (handlers, middleware, hooks, guards, authenticators)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_user"]


async def call_user(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, awaited if it returned an awaitable.

    An ``async def`` that never waits finishes without suspending the caller, so the eager
    command start (``gateway.eager``) stays eager through user code.
    """
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
