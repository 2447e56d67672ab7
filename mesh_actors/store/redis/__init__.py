"""Redis storage: the key layout, the ordered batched writer, the client factory, the embedded
redis-server, and :class:`RedisBackend`, which the feature adapters are built on."""

from __future__ import annotations

from .backend import RedisBackend, text
from .client import connect_redis
from .embedded import EmbeddedRedis, EmbeddedRedisError
from .keys import KeyLayout
from .writer import OrderedWriter

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "KeyLayout",
    "OrderedWriter",
    "RedisBackend",
    "connect_redis",
    "text",
]
