"""The inline runtime: the gateway and every shard are plain objects in one asyncio process.

A link is a direct method call (no copy, no serialization). Redis is ``MESH_REDIS_URL`` or an
embedded redis-server child process. This is the default and the fastest runtime on one machine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..actors.connection_shard import ConnectionShard
from ..actors.room_shard import RoomShard
from ..actors.sharding import shard_index
from ..gateway.gateway import Gateway
from ..store.connect import connect_redis
from ..store.embedded import EmbeddedRedis
from ..store.keys import KeyLayout
from .maintenance import drop_stale_gateways

if TYPE_CHECKING:
    from ..server.mesh_server import MeshServer

__all__ = ["InlineDirectory", "InlineRef", "InlineRuntime", "RedisUnavailableError"]

logger = logging.getLogger(__name__)


class RedisUnavailableError(RuntimeError):
    """Redis could not be reached at start; the message names the URL and what to check."""


class InlineRef:
    """A link to an actor in this process: calls run the method directly."""

    __slots__ = ("_actor", "_tasks")

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def actor(self) -> Any:
        """The object behind the link (inline runtime only)."""
        return self._actor

    async def call(self, method: str, *args: Any) -> Any:
        result = getattr(self._actor, method)(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def tell(self, method: str, *args: Any) -> None:
        try:
            result = getattr(self._actor, method)(*args)
        except Exception:
            logger.exception("%s.%s failed", type(self._actor).__name__, method)
            return
        if inspect.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s call failed", type(self._actor).__name__, exc_info=task.exception())


class InlineDirectory:
    """Finds shards by key hash and gateways by id, all in this process."""

    def __init__(self) -> None:
        self._room_shards: list[InlineRef] = []
        self._connection_shards: list[InlineRef] = []
        self._gateways: dict[str, InlineRef] = {}

    def set_shards(
        self, room_shards: Sequence[RoomShard], connection_shards: Sequence[ConnectionShard]
    ) -> None:
        """Install (or replace, after a restart) the shard objects."""
        self._room_shards = [InlineRef(shard) for shard in room_shards]
        self._connection_shards = [InlineRef(shard) for shard in connection_shards]

    def add_gateway(self, gateway: Gateway) -> None:
        """Make a gateway reachable by its id."""
        self._gateways[gateway.id] = InlineRef(gateway)

    def room_shard(self, room: str) -> InlineRef:
        return self._room_shards[shard_index(room, len(self._room_shards))]

    def connection_shard(self, connection_id: str) -> InlineRef:
        return self._connection_shards[shard_index(connection_id, len(self._connection_shards))]

    def room_shards(self) -> Sequence[InlineRef]:
        return self._room_shards

    def connection_shards(self) -> Sequence[InlineRef]:
        return self._connection_shards

    def gateway(self, gateway_id: str) -> InlineRef | None:
        return self._gateways.get(gateway_id)

    def gateways(self) -> Sequence[InlineRef]:
        return list(self._gateways.values())


class InlineRuntime:
    """Runs a :class:`MeshServer` in this process."""

    def __init__(self, server: MeshServer) -> None:
        self.server = server
        self.settings = server.settings
        self.directory = InlineDirectory()
        self.keys = KeyLayout(self.settings.key_prefix)
        self.redis: Redis | None = None
        self.gateway: Gateway | None = None
        self.redis_url: str | None = None
        self._embedded: EmbeddedRedis | None = None

    async def start(self, host: str, port: int) -> None:
        """Connect Redis, rebuild the shards from it, then open the gateway."""
        settings = self.settings
        url = settings.redis_url
        if url is None:
            self._embedded = EmbeddedRedis()
            url = await asyncio.to_thread(self._embedded.start)
        self.redis_url = url
        self.redis = connect_redis(url, timeout=settings.redis_timeout)
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=5)
        except (RedisError, OSError, TimeoutError) as error:
            await self._close_redis()
            raise RedisUnavailableError(
                f"Cannot reach Redis at {url}: {str(error).rstrip('.')}. Check MESH_REDIS_URL / --redis-url, "
                "or unset it to use the embedded Redis."
            ) from error
        await self._start_shards()
        self.gateway = Gateway(self.server, self.directory)
        self.directory.add_gateway(self.gateway)
        await self.gateway.start(host, port)

    def _new_shards(self) -> tuple[list[RoomShard], list[ConnectionShard]]:
        assert self.redis is not None
        settings, keys, redis = self.settings, self.keys, self.redis
        timeout = settings.persist_timeout
        rooms = [
            RoomShard(i, settings.room_shards, redis, keys, self.directory, persist_timeout=timeout)
            for i in range(settings.room_shards)
        ]
        connections = [
            ConnectionShard(i, settings.connection_shards, redis, keys, persist_timeout=timeout)
            for i in range(settings.connection_shards)
        ]
        return rooms, connections

    async def _start_shards(self) -> None:
        rooms, connections = self._new_shards()
        await asyncio.gather(*(shard.rebuild() for shard in connections))
        await asyncio.gather(*(shard.rebuild() for shard in rooms))
        self.directory.set_shards(rooms, connections)
        # Connections left in Redis by an earlier run of this process are dead: their sockets
        # went with it. Remove them and their room memberships.
        await drop_stale_gateways(self.directory, live=())

    async def restart_shards(self) -> None:
        """Replace every shard with a fresh object rebuilt from Redis, as a crash restart would."""
        for ref in [*self.directory.room_shards(), *self.directory.connection_shards()]:
            await ref.actor.flush()
        rooms, connections = self._new_shards()
        await asyncio.gather(*(shard.rebuild() for shard in connections))
        await asyncio.gather(*(shard.rebuild() for shard in rooms))
        self.directory.set_shards(rooms, connections)

    async def close(self) -> None:
        """Close the gateway (clients see 1001), flush the shards, stop Redis if embedded."""
        if self.gateway is not None:
            await self.gateway.close()
        for ref in [*self.directory.room_shards(), *self.directory.connection_shards()]:
            if not await ref.actor.flush(timeout=self.settings.persist_timeout):
                logger.error("shutdown with writes Redis did not take: they are lost")
        await self._close_redis()

    async def _close_redis(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None
