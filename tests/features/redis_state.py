"""What the Redis adapters left in the real Redis: every key under a prefix, by its documented name."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from mesh_actors.store.redis.backend import glob_escape

__all__ = ["stored_keys"]


async def stored_keys(redis: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (named without it) with its content: a ``dict`` for a hash, a
    ``set`` for a set, a ``str`` for a string. ``redis`` decodes responses (the ``redis`` fixture)."""
    found: dict[str, Any] = {}
    async for key in redis.scan_iter(match=glob_escape(prefix + "*")):
        kind = await redis.type(key)
        if kind == "hash":
            value: Any = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "string":
            value = await redis.get(key)
        else:
            raise AssertionError(f"{key!r}: a {kind!r}, which no adapter writes")
        found[key[len(prefix) :]] = value
    return found
