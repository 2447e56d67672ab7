"""The Ray actors of a deployment: the processes that host its shards and its gateways.

- :class:`ShardHost` hosts the shards dealt to it (:meth:`DeploymentSpec.hosted_by`), of every
  owner kind. It is restartable: after a crash Ray re-creates it, and the first link that asks
  for its address makes it rebuild its shards' slices from Redis before it serves anything.
- :class:`GatewayHost` runs one Gateway (WebSockets + ``/healthz``) for the app shipped by the
  driver, bound with SO_REUSEPORT so the kernel spreads connections over the gateways of a node.
- :class:`NodeHost` is both in one process (``colocate``).

Each gateway process unpickles the app, applies the deployment's shared settings to it
(``App.with_settings``), builds its own :class:`~mesh_actors.app.Api` around it and binds that to
a :class:`HostedRuntime`. The classes are undecorated: ``ray.remote(**options)(cls)`` is applied
by the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...actors.registry import OwnerKind
from ...app import Api
from ...gateway.gateway import Gateway
from ...store.redis import KeyLayout, RedisBackend, connect_redis
from ..inline import InlineRef, start_owners
from ..link import LinkDirectory, LinkServer
from .control import node_id, node_ip
from .shipping import unpickle_app
from .spec import DeploymentSpec

__all__ = ["GatewayHost", "GatewayStatus", "HostedRuntime", "NodeHost", "ShardHost"]

logger = logging.getLogger(__name__)


class GatewayStatus(NamedTuple):
    """What a gateway answers to the supervisor's liveness probe."""

    connections: int
    drained: bool
    """Set once the gateway was drained (its node is going away): replace it elsewhere."""


@dataclass
class HostedRuntime:
    """What the API of a gateway process runs on: this process's links, and its gateway."""

    directory: LinkDirectory
    gateway: Gateway

    @property
    def port(self) -> int:
        """The port the gateway shares with the deployment's other gateways."""
        return self.gateway.port

    async def close(self) -> None:
        """Close the gateway (the host actor stops the rest: :meth:`GatewayHost.stop`)."""
        await self.gateway.close()


class _Placed:
    """What tooling asks any host actor."""

    def node_id(self) -> str:
        """The Ray node this process runs on (placement checks, tooling)."""
        return node_id()


class ShardHost(_Placed):
    """The shards assigned to one process, served over the data plane.

    Each shard keeps its own name and link: hosting is placement only, and which shards share a
    process does not change what any of them does.
    """

    def __init__(self, spec: DeploymentSpec, host: int) -> None:
        if not 0 <= host < spec.host_count:
            raise ValueError(f"shard host {host} out of range 0..{spec.host_count - 1}")
        self.spec = spec
        self.host = host
        self.incarnation = uuid.uuid4().hex
        self._started: asyncio.Future[tuple[str, int]] | None = None
        self._targets: dict[str, Any] = {}
        """What this process's link server serves, by actor name."""
        self._directory: LinkDirectory | None = None
        self._link_server: LinkServer | None = None

    async def data_address(self) -> tuple[str, int]:
        """The link address, after the shards rebuilt their slices from Redis (first call only)."""
        if self._started is None or (self._started.done() and self._started.exception() is not None):
            self._started = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._started)

    async def _start(self) -> tuple[str, int]:
        spec, settings = self.spec, self.spec.settings
        if settings.redis_url is None:
            raise ValueError("a deployment's settings name its Redis")
        redis = connect_redis(settings.redis_url, timeout=settings.redis_timeout)
        backend = RedisBackend(redis, KeyLayout(settings.key_prefix), settings.persist_timeout)
        # One directory for everything in this process; the shards here are reached directly.
        self._directory = directory = spec.directory()
        hosted = {shard.name for shard in spec.hosted_by(self.host)}

        def here(kind: OwnerKind[Any], index: int) -> bool:
            return kind.actor_name(spec.name, index) in hosted

        started = await start_owners(spec.kinds, settings, backend, directory, only=here)
        for kind in spec.kinds:
            indices = [index for index in range(spec.shard_count(kind)) if here(kind, index)]
            for index, shard in zip(indices, started.get(kind.name, []), strict=True):
                name = kind.actor_name(spec.name, index)
                self._targets[name] = shard
                directory.add_local(name, InlineRef(shard))
            if indices:
                logger.info("%s shards %s rebuilt from Redis", kind.name, indices)
        self._link_server = LinkServer(self._targets, spec.token, name=spec.shard_host_name(self.host))
        return await self._link_server.start(node_ip(), 0)

    def incarnation_id(self) -> str:
        """This process's id: it changes when Ray restarts the actor."""
        return self.incarnation


class _GatewayRole(_Placed):
    """What the supervisor asks of any actor that runs a Gateway (``GatewayHost``, ``NodeHost``)."""

    spec: DeploymentSpec
    gateway_id: str
    _app: bytes
    """The pickled app (:func:`.shipping.pickle_app`)."""
    _gateway: Gateway | None = None
    _directory: LinkDirectory | None = None
    _link_server: LinkServer | None = None
    _draining: asyncio.Future[int] | None = None
    _stopped: asyncio.Future[GatewayStatus] | None = None

    async def _open_gateway(self, directory: LinkDirectory, host: str, port: int) -> Gateway:
        """Build this process's API around the shipped app; serve it on ``host:port`` (shared)."""
        self._stopped = asyncio.get_running_loop().create_future()
        api = Api(unpickle_app(self._app).with_settings(**self.spec.overrides()))
        gateway = Gateway(api, directory, gateway_id=self.gateway_id)
        directory.add_local(self.gateway_id, InlineRef(gateway))
        api.bind(HostedRuntime(directory, gateway))
        await gateway.start(host, port, reuse_port=True)
        self._gateway, self._directory = gateway, directory
        return gateway

    def _connection_count(self) -> int:
        return len(self._gateway.connections) if self._gateway is not None else 0

    def _report_stopped(self, connections: int) -> None:
        """Answer the supervisor's pending :meth:`until_stopped` call."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(GatewayStatus(connections, self._draining is not None))

    async def set_gateways(self, gateway_ids: list[str]) -> None:
        """The live gateways (for broadcasts to everyone)."""
        if self._directory is not None:
            await self._directory.set_gateways(gateway_ids)

    def current_gateway_id(self) -> str:
        """The id of the gateway this process runs (a NodeHost's changes with each incarnation)."""
        return self.gateway_id

    async def ping(self) -> GatewayStatus:
        """Liveness probe: the number of connections, and whether the gateway was drained."""
        if self._draining is not None:
            return GatewayStatus(0, self._draining.done())
        return GatewayStatus(self._connection_count(), False)

    async def until_stopped(self) -> GatewayStatus:
        """Return once this gateway stopped (drained or told to stop).

        The supervisor keeps one such call pending per gateway: it returns when the gateway is
        drained, and fails at once with ``RayActorError`` when its process dies, so deaths are
        noticed without polling (each Ray call costs CPU in three processes).
        """
        if self._stopped is None:
            raise RuntimeError("gateway not started")
        return await asyncio.shield(self._stopped)

    async def drain(self) -> int:
        """Close every socket with 1001 "going away" and stop; the supervisor then replaces this
        gateway on another node. Returns the number of connections that were open."""
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        return await asyncio.shield(self._draining)

    async def _drain(self) -> int:
        connections = self._connection_count()
        await self.stop()
        return connections

    async def stop(self) -> None:
        """Drain: close every socket with 1001 "going away", then stop serving links."""
        connections = self._connection_count()
        if self._gateway is not None:
            await self._gateway.close()
        if self._link_server is not None:
            await self._link_server.close()
        if self._directory is not None:
            await self._directory.close()
        self._report_stopped(connections)


class GatewayHost(_GatewayRole):
    """One Gateway serving WebSockets on a shared port."""

    def __init__(self, spec: DeploymentSpec, gateway_id: str, app: bytes) -> None:
        self.spec = spec
        self.gateway_id = gateway_id
        self._app = app
        self._ready: asyncio.Future[tuple[str, int]] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Start the gateway on ``host:port`` (shared), serve links; returns (gateway id, port)."""
        self._ready = asyncio.get_running_loop().create_future()
        gateway = await self._open_gateway(self.spec.directory(), host, port)
        self._link_server = LinkServer(gateway, self.spec.token, name=self.gateway_id)
        self._ready.set_result(await self._link_server.start(node_ip(), 0))
        return self.gateway_id, gateway.port

    async def data_address(self) -> tuple[str, int]:
        """The link address (waits until :meth:`start` finished)."""
        if self._ready is None:
            raise RuntimeError("gateway not started")
        return await asyncio.shield(self._ready)


class NodeHost(_GatewayRole, ShardHost):
    """Shards and a gateway in one process (``colocate=True``).

    A broadcast from one of its clients to a room it owns is then a method call, as in the inline
    runtime, and a small node runs one Ray worker instead of two. Ray restarts the process when it
    dies (the shards rebuild from Redis); the supervisor then drops the dead gateway's connections
    and starts the new incarnation's gateway on the same port. Each incarnation's gateway has its
    own id, ``<host name>-gw-<incarnation>``, so a dead gateway's connections are never mistaken
    for the new one's.
    """

    def __init__(self, spec: DeploymentSpec, host: int, app: bytes) -> None:
        ShardHost.__init__(self, spec, host)
        self.gateway_id = f"{spec.shard_host_name(host)}-gw-{self.incarnation[:8]}"
        self._app = app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Start the shards (rebuilt from Redis), then the gateway; returns (gateway id, port)."""
        await self.data_address()
        assert self._directory is not None
        gateway = await self._open_gateway(self._directory, host, port)
        self._targets[self.gateway_id] = gateway  # links to this gateway may now open
        return self.gateway_id, gateway.port

    async def stop(self) -> None:
        """Close the gateway's sockets with 1001 "going away"; the shards keep serving until the
        supervisor removes this process, so other gateways' clean-ups still reach them."""
        connections = self._connection_count()
        if self._gateway is not None:
            await self._gateway.close()
        self._report_stopped(connections)
