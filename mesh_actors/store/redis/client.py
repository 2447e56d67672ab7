"""Redis clients as every actor needs them: bounded timeouts, so an outage fails fast."""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["connect_redis"]


def connect_redis(url: str, *, timeout: float = 5.0) -> Redis:
    """A client for ``url`` whose connects and commands give up after ``timeout`` seconds.

    Without a socket timeout a stalled Redis (paused, partitioned) would hang every write forever.
    """
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
