"""The inline runtime: the gateway and every shard are plain objects in one asyncio process.

A link is a direct method call (no copy, no serialization). Redis is ``MESH_REDIS_URL`` or an
embedded redis-server child process. This is the default and the fastest runtime on one machine.
It runs every registered owner kind (``app.kinds``) without knowing what any of them owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..actors.cleanup import drop_stale_gateways
from ..actors.ref import ActorRef, GatewayActor, Owner, method_name
from ..actors.registry import OwnerKind, Slot, rebuild_order
from ..app import Api
from ..gateway.gateway import Gateway
from ..store.redis import EmbeddedRedis, KeyLayout, RedisBackend, connect_redis

__all__ = ["InlineDirectory", "InlineRef", "InlineRuntime", "RedisUnavailableError", "start_owners"]

logger = logging.getLogger(__name__)

A = TypeVar("A")
OwnerT = TypeVar("OwnerT", bound=Owner)
P = ParamSpec("P")
R = TypeVar("R")


class RedisUnavailableError(RuntimeError):
    """Redis could not be reached at start; the message names the URL and what to check."""


class InlineRef(ActorRef[A]):
    """A link to an actor in this process: calls run the method directly."""

    __slots__ = ("_actor", "_tasks")

    def __init__(self, actor: A) -> None:
        self._actor = actor
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def actor(self) -> A:
        """The object behind the link (inline runtime only)."""
        return self._actor

    async def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # Looked up by name, as a link does, so a subclass's override is the one that runs.
        result = getattr(self._actor, method_name(method))(*args, **kwargs)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        return result

    def tell(self, method: Callable[Concatenate[A, P], Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        name = method_name(method)
        try:
            result = getattr(self._actor, name)(*args, **kwargs)
        except Exception:
            logger.exception("%s.%s failed", type(self._actor).__name__, name)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s call failed", type(self._actor).__name__, exc_info=task.exception())


class InlineDirectory:
    """Finds shards by key hash and gateways by id, all in this process."""

    def __init__(self, kinds: Sequence[OwnerKind[Any]]) -> None:
        self._kinds = tuple(kinds)
        self._shards: dict[str, list[InlineRef[Any]]] = {kind.name: [] for kind in kinds}
        self._gateways: dict[str, InlineRef[GatewayActor]] = {}

    def set_shards(self, kind: OwnerKind[OwnerT], shards: Sequence[OwnerT]) -> None:
        """Install (or replace, after a restart) the shard objects of ``kind``."""
        self._shards[kind.name] = [InlineRef(shard) for shard in shards]

    def add_gateway(self, gateway_id: str, gateway: GatewayActor) -> None:
        """Make a gateway reachable by its id."""
        self._gateways[gateway_id] = InlineRef(gateway)

    def kinds(self) -> Sequence[OwnerKind[Any]]:
        return self._kinds

    def shard(self, kind: OwnerKind[OwnerT], key: str) -> InlineRef[OwnerT]:
        shards = self._shards[kind.name]
        return shards[kind.shard_of(key, len(shards))]

    def shards(self, kind: OwnerKind[OwnerT]) -> Sequence[InlineRef[OwnerT]]:
        return self._shards[kind.name]

    def gateway(self, gateway_id: str) -> InlineRef[GatewayActor] | None:
        return self._gateways.get(gateway_id)

    def gateways(self) -> Sequence[InlineRef[GatewayActor]]:
        return list(self._gateways.values())


async def start_owners(
    kinds: Sequence[OwnerKind[Any]], settings: Any, backend: Any, directory: Any, *, only: Any = None
) -> dict[str, list[Owner]]:
    """Create and rebuild the shards of every kind, in dependency order; returns them by kind.

    ``only(kind, index)`` limits it to the shards this process hosts (default: all of them).
    """
    started: dict[str, list[Owner]] = {}
    for wave in rebuild_order(kinds):
        created = [
            (kind, index, kind.create(Slot(index, kind.shard_count(settings)), backend, directory))
            for kind in wave
            for index in range(kind.shard_count(settings))
            if only is None or only(kind, index)
        ]
        counts = await asyncio.gather(*(shard.rebuild() for _, _, shard in created))
        for (kind, index, shard), count in zip(created, counts, strict=True):
            logger.debug("%s shard %d rebuilt %d entries", kind.name, index, count)
            started.setdefault(kind.name, []).append(shard)
    return started


class InlineRuntime:
    """Runs an app's API (a :class:`MeshServer`) in this process."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.settings = api.settings
        self.kinds = api.app.kinds
        self.directory = InlineDirectory(self.kinds)
        self.redis: Redis | None = None
        self.gateway: Gateway | None = None
        self.redis_url: str | None = None
        self._embedded: EmbeddedRedis | None = None

    @property
    def port(self) -> int | None:
        """The gateway's bound port."""
        return self.gateway.port if self.gateway is not None else None

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
        # Connections left in Redis by an earlier run of this process are dead: their sockets
        # went with it. Remove them and their memberships.
        await drop_stale_gateways(self.directory, live=())
        self.gateway = Gateway(self.api, self.directory)
        self.directory.add_gateway(self.gateway.id, self.gateway)
        await self.gateway.start(host, port)

    async def _start_shards(self) -> None:
        assert self.redis is not None
        backend = RedisBackend(self.redis, KeyLayout(self.settings.key_prefix), self.settings.persist_timeout)
        started = await start_owners(self.kinds, self.settings, backend, self.directory)
        for kind in self.kinds:
            self.directory.set_shards(kind, started.get(kind.name, []))

    def _owners(self) -> list[Owner]:
        return [ref.actor for kind in self.kinds for ref in self.directory.shards(kind)]

    async def restart_shards(self) -> None:
        """Replace every shard with a fresh object rebuilt from Redis, as a crash restart would."""
        for owner in self._owners():
            await owner.flush()
        await self._start_shards()

    async def close(self) -> None:
        """Close the gateway (clients see 1001), flush the shards, stop Redis if embedded."""
        if self.gateway is not None:
            await self.gateway.close()
        for owner in self._owners():
            if not await owner.flush(timeout=self.settings.persist_timeout):
                logger.error("shutdown with writes Redis did not take: they are lost")
        await self._close_redis()

    async def _close_redis(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None
