"""The Ray runtime: the same gateway and shard objects, placed on a Ray cluster.

Ray does placement (gateways spread over nodes, several per node sharing one port with
SO_REUSEPORT), naming, restarts and health; it is the control plane only. Actors talk over the
data-plane links of :mod:`.link`, finding each other's addresses through named Ray actors.

- :class:`ShardHost` hosts some of the RoomShards and ConnectionShards (by default one of each:
  every Ray worker process costs ~0.6 % of a core at rest, whatever it runs). It is restartable:
  after a crash Ray re-creates it, and the first link that asks for its address makes it rebuild
  its shards' slices from Redis before it serves anything.
- :class:`GatewayHost` runs one Gateway (WebSockets + ``/healthz``) with the app unpickled from the
  driver, bound with SO_REUSEPORT so the kernel spreads connections over the gateways of a node.
- :class:`RayDeployment` (the driver) starts, supervises and stops them. It pings every gateway;
  when one dies, its connections are removed from every shard (no ghosts) and the survivors learn
  the new gateway list; a replacement is started on the same port.

Actor classes are undecorated: ``ray.remote(**options)(cls)`` is applied at deploy time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import site
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import ray
from ray import cloudpickle
from ray.exceptions import ActorDiedError, ActorUnschedulableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..actors.connection_shard import ConnectionShard
from ..actors.room_shard import RoomShard
from ..gateway.gateway import Gateway
from ..protocol.errors import CodeError
from ..server.settings import MeshSettings
from ..store.connect import connect_redis
from ..store.embedded import EmbeddedRedis
from ..store.keys import KeyLayout
from .directory import LinkDirectory, connection_shard_name, room_shard_name
from .inline import InlineRef
from .link import Link, LinkGoneError, LinkServer, Resolver
from .maintenance import drop_gateway, drop_stale_gateways

if TYPE_CHECKING:
    from ..server.mesh_server import MeshServer

__all__ = [
    "GatewayHost",
    "GatewayStatus",
    "LinkedRuntime",
    "RayDeployment",
    "ShardHost",
    "drain_node",
    "init_ray",
    "pickle_app",
]

logger = logging.getLogger(__name__)

NAMESPACE = "mesh-actors"
"""Ray namespace of every named actor of a deployment."""


# -- control plane helpers -----------------------------------------------------------------------


def init_ray(address: str | None = None) -> None:
    """Connect to Ray (``address``), or start a local Ray bound to loopback when it is ``None``.

    A local Ray advertises the machine's network address unless told otherwise: the two
    environment variables and ``_node_ip_address`` keep every port on 127.0.0.1.
    """
    if ray.is_initialized():
        return
    if address is None:
        loopback_ray_environment()
        # "local": a new Ray of our own, even when another one runs on this machine (plain
        # ray.init() would join that one through /tmp/ray/ray_current_cluster).
        ray.init(
            address="local",
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            namespace=NAMESPACE,
            # Ray starts one idle worker per CPU for the first driver; every worker process costs
            # ~1 % of a core at rest, and the deployment starts the workers it needs anyway.
            _system_config={"prestart_worker_first_driver": False},
        )
    else:
        ray.init(address=address, namespace=NAMESPACE)


def loopback_ray_environment() -> None:
    """Make Ray nodes started by this process advertise 127.0.0.1 and send no usage stats.

    With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray takes the loopback address as the node
    address instead of the machine's network address (which it would otherwise bind and publish).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def ray_resolver(namespace: str, host_of: Callable[[str], str] = str) -> Callable[[str], Resolver]:
    """Resolvers that find the Ray actor hosting a mesh actor and ask it for its data-plane address.

    ``host_of`` maps a mesh actor's name to the name of the Ray actor that hosts it (a gateway
    hosts itself; a shard lives in a :class:`ShardHost`).
    """

    def resolver_for(name: str) -> Resolver:
        host = host_of(name)

        async def resolve() -> tuple[str, int]:
            try:
                handle = await asyncio.to_thread(ray.get_actor, host, namespace)
            except ValueError as error:
                raise LinkGoneError(f"no actor named {host}") from error
            try:
                address, port = await handle.data_address.remote()
            except ActorDiedError as error:
                raise LinkGoneError(f"actor {host} died") from error
            return str(address), int(port)

        return resolve

    return resolver_for


def _node_ip() -> str:
    return str(ray.util.get_node_ip_address())


def _user_modules(server: MeshServer) -> set[Any]:
    """Modules of the app's callables that workers may not be able to import (not installed)."""
    callables = server.user_callables()
    installed = (*site.getsitepackages(), site.getusersitepackages(), sys.base_prefix)
    modules = set()
    for fn in callables:
        name = getattr(fn, "__module__", None)
        module = sys.modules.get(name) if name else None
        if module is None or name is None or name.startswith("mesh_actors"):
            continue
        path = getattr(module, "__file__", None) or ""
        if name == "__main__" or not path.startswith(installed):
            modules.add(module)
    return modules


def pickle_app(server: MeshServer) -> bytes:
    """The app (commands, middleware, hooks, guards, settings) as bytes for the gateways.

    Modules that are not installed packages (the app file itself) are pickled by value, so the app
    file need not exist on the worker nodes; its third-party imports must be installed there.
    """
    modules = _user_modules(server)
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(server))
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


@dataclass
class LinkedRuntime:
    """What a MeshServer runs on in a multi-process runtime: links, and maybe a local gateway."""

    directory: LinkDirectory
    gateway: Gateway | None = None
    on_close: Callable[[], Any] | None = field(default=None, repr=False)
    port: int | None = None
    """The port the deployment's gateways share (for client handles, which have no gateway)."""

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()
        if self.on_close is not None:
            result = self.on_close()
            if asyncio.iscoroutine(result):
                await result
        await self.directory.close()


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything an actor of one deployment needs to find the others."""

    name: str
    namespace: str
    token: bytes
    room_shards: int
    connection_shards: int
    redis_url: str
    key_prefix: str
    redis_timeout: float = 5.0
    persist_timeout: float = 5.0
    shard_hosts: int = 0
    """Processes hosting the shards; 0 means one per room/connection shard pair."""
    colocated: bool = False
    """The shard hosts are :class:`NodeHost` processes, each running a gateway too."""

    @property
    def host_count(self) -> int:
        """How many :class:`ShardHost` actors the deployment has."""
        return self.shard_hosts or max(self.room_shards, self.connection_shards)

    def shard_names(self) -> list[tuple[str, int, str]]:
        """``(kind, index, actor name)`` of every shard, rooms first: the order hosts are dealt."""
        rooms = [("room", i, room_shard_name(self.name, i)) for i in range(self.room_shards)]
        connections = [
            ("connection", i, connection_shard_name(self.name, i)) for i in range(self.connection_shards)
        ]
        return [*rooms, *connections]

    def shard_host_name(self, host: int) -> str:
        """The Ray actor name of shard host ``host`` (``-node-`` when it runs a gateway too)."""
        return f"{self.name}-{'node' if self.colocated else 'shards'}-{host}"

    def hosted_by(self, host: int) -> list[tuple[str, int, str]]:
        """The shards host ``host`` runs: every ``host_count``-th of :meth:`shard_names`, so with
        the default host count host ``i`` runs room shard ``i`` and connection shard ``i``."""
        return self.shard_names()[host :: self.host_count]

    def host_of(self, name: str) -> str:
        """The Ray actor hosting mesh actor ``name`` (gateways host themselves, except a
        :class:`NodeHost`'s, whose ids are ``<node host name>-gw-<incarnation>``)."""
        for position, (_, _, shard) in enumerate(self.shard_names()):
            if shard == name:
                return self.shard_host_name(position % self.host_count)
        if self.colocated and name.startswith(f"{self.name}-node-"):
            return name.split("-gw-", 1)[0]
        return name

    def directory(self) -> LinkDirectory:
        return LinkDirectory(
            self.name,
            self.room_shards,
            self.connection_shards,
            self.token,
            ray_resolver(self.namespace, self.host_of),
        )


# -- actors --------------------------------------------------------------------------------------


class ShardHost:
    """The shards assigned to one process, served over the data plane (a Ray actor at deploy time).

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
        spec = self.spec
        redis = connect_redis(spec.redis_url, timeout=spec.redis_timeout)
        keys = KeyLayout(spec.key_prefix)
        timeout = spec.persist_timeout
        # One directory for everything in this process; the shards here are reached directly.
        self._directory = directory = spec.directory()
        for kind, index, name in spec.hosted_by(self.host):
            shard: RoomShard | ConnectionShard
            if kind == "room":
                shard = RoomShard(index, spec.room_shards, redis, keys, directory, persist_timeout=timeout)
            else:
                shard = ConnectionShard(index, spec.connection_shards, redis, keys, persist_timeout=timeout)
            count = await shard.rebuild()
            logger.info("%s shard %d rebuilt %d entries from Redis", kind, index, count)
            self._targets[name] = shard
            directory.add_local_shard(name, InlineRef(shard))
        self._link_server = LinkServer(self._targets, spec.token, name=spec.shard_host_name(self.host))
        return await self._link_server.start(_node_ip(), 0)

    async def ping(self) -> str:
        """Liveness probe; returns this incarnation's id (it changes when Ray restarts the actor)."""
        return self.incarnation

    def incarnation_id(self) -> str:
        """This process's id: it changes when Ray restarts the actor."""
        return self.incarnation

    def node_id(self) -> str:
        """The Ray node this process runs on (placement checks, tooling)."""
        return str(ray.get_runtime_context().get_node_id())


class GatewayStatus(NamedTuple):
    """What a gateway answers to the supervisor's liveness probe."""

    connections: int
    drained: bool
    """Set once the gateway was drained (its node is going away): replace it elsewhere."""


class _GatewayRole:
    """What the supervisor asks of any actor that runs a Gateway (``GatewayHost``, ``NodeHost``)."""

    spec: DeploymentSpec
    gateway_id: str
    _app: bytes
    _overrides: dict[str, Any]
    _gateway: Gateway | None = None
    _directory: LinkDirectory | None = None
    _link_server: LinkServer | None = None
    _draining: asyncio.Future[int] | None = None
    _stopped: asyncio.Future[GatewayStatus] | None = None

    async def _open_gateway(self, directory: LinkDirectory, host: str, port: int) -> Gateway:
        """Unpickle the app and serve it on ``host:port`` (shared with SO_REUSEPORT)."""
        self._stopped = asyncio.get_running_loop().create_future()
        server: MeshServer = cloudpickle.loads(self._app)
        server.settings = MeshSettings(**{**server.settings.model_dump(), **self._overrides})
        gateway = Gateway(server, directory, gateway_id=self.gateway_id)
        directory.add_local(self.gateway_id, InlineRef(gateway))
        server.attach(LinkedRuntime(directory, gateway))
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
            for link in self._directory.set_gateways(gateway_ids):
                if isinstance(link, Link):
                    await link.close()

    def node_id(self) -> str:
        """The Ray node this gateway runs on (placement checks, tooling)."""
        return str(ray.get_runtime_context().get_node_id())

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
    """One Gateway serving WebSockets on a shared port (a Ray actor at deploy time)."""

    def __init__(self, spec: DeploymentSpec, gateway_id: str, app: bytes, overrides: dict[str, Any]) -> None:
        self.spec = spec
        self.gateway_id = gateway_id
        self._app = app
        self._overrides = overrides
        self._ready: asyncio.Future[tuple[str, int]] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Unpickle the app, listen on ``host:port`` (shared), serve links; returns (id, port)."""
        self._ready = asyncio.get_running_loop().create_future()
        gateway = await self._open_gateway(self.spec.directory(), host, port)
        self._link_server = LinkServer(gateway, self.spec.token, name=self.gateway_id)
        self._ready.set_result(await self._link_server.start(_node_ip(), 0))
        return self.gateway_id, gateway.port

    async def data_address(self) -> tuple[str, int]:
        """The link address (waits until :meth:`start` finished)."""
        if self._ready is None:
            raise RuntimeError("gateway not started")
        return await asyncio.shield(self._ready)


class NodeHost(_GatewayRole, ShardHost):
    """Shards and a gateway in one process (``colocate=True``; a Ray actor at deploy time).

    A broadcast from one of its clients to a room it owns is then a method call, as in the inline
    runtime, and a small node runs one Ray worker instead of two. Ray restarts the process when it
    dies (the shards rebuild from Redis); the supervisor then drops the dead gateway's connections
    and starts the new incarnation's gateway on the same port. Each incarnation's gateway has its
    own id, ``<host name>-gw-<incarnation>``, so a dead gateway's connections are never mistaken
    for the new one's.
    """

    def __init__(self, spec: DeploymentSpec, host: int, app: bytes, overrides: dict[str, Any]) -> None:
        ShardHost.__init__(self, spec, host)
        self.gateway_id = f"{spec.shard_host_name(host)}-gw-{self.incarnation[:8]}"
        self._app = app
        self._overrides = overrides

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


# -- the driver ----------------------------------------------------------------------------------


class RayDeployment:
    """Starts, supervises and stops one deployment of a MeshServer on Ray."""

    def __init__(
        self,
        server: MeshServer,
        *,
        address: str | None = None,
        gateways: int = 2,
        room_shards: int | None = None,
        connection_shards: int | None = None,
        shard_hosts: int | None = None,
        host: str | None = None,
        port: int | None = None,
        watch_interval: float = 5.0,
        replace_dead_gateways: bool = True,
        colocate: bool | None = None,
    ) -> None:
        if gateways < 1:
            raise ValueError("a deployment needs at least one gateway")
        settings = server.settings
        self.server = server
        self.address = address
        self.gateway_count = gateways
        self.room_shards = room_shards or settings.room_shards
        self.connection_shards = connection_shards or settings.connection_shards
        self.colocate = settings.colocate if colocate is None else colocate
        """Run the shards inside the gateways' processes (:class:`NodeHost`), ``gateways`` of them."""
        self.shard_hosts = gateways if self.colocate else (shard_hosts or settings.shard_hosts or 0)
        if self.colocate and (shard_hosts or settings.shard_hosts or gateways) != gateways:
            raise ValueError(
                "with colocate, the shards live in the gateways: shard_hosts must equal gateways"
            )
        if not self.colocate and self.shard_hosts > self.room_shards + self.connection_shards:
            raise ValueError(
                f"shard_hosts={self.shard_hosts} exceeds the {self.room_shards + self.connection_shards} "
                "shards it would host"
            )
        self.host = host or settings.host
        self.port = settings.port if port is None else port
        self.watch_interval = watch_interval
        """Seconds between liveness probes of every gateway. They only catch hung gateways: a
        gateway whose process dies or that was drained is noticed at once (:meth:`_follow`)."""
        self.replace_dead_gateways = replace_dead_gateways
        self.gateways: dict[str, Any] = {}
        """Live gateway actors by gateway id."""
        self.gateway_nodes: dict[str, str] = {}
        """The Ray node of each live gateway."""
        self.draining_nodes: set[str] = set()
        """Nodes a gateway was drained on (:func:`drain_node`): no new gateways go there."""
        self.shards: list[Any] = []
        """The :class:`ShardHost` actors."""
        self.spec: DeploymentSpec | None = None
        self._embedded: EmbeddedRedis | None = None
        self._app = b""
        self._watch: asyncio.Task[None] | None = None
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._node_hosts: dict[str, int] = {}
        """With ``colocate``: the host index of each live gateway's :class:`NodeHost`."""
        self.gateway_deaths: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        """``(gateway id, connections dropped)`` for each gateway found dead (tests wait on it)."""

    async def start(self) -> None:
        """Create the shards (rebuilt from Redis), then the gateways, then start supervising.

        If any step fails (a taken port, an unreachable Redis), every actor created so far is
        removed before the error propagates.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop_actors()
            raise

    async def _start(self) -> None:
        init_ray(self.address)
        settings = self.server.settings
        redis_url = settings.redis_url
        if redis_url is None:
            self._embedded = EmbeddedRedis()
            redis_url = await asyncio.to_thread(self._embedded.start)
        self.spec = spec = DeploymentSpec(
            name=f"mesh-{uuid.uuid4().hex[:10]}",
            namespace=NAMESPACE,
            token=secrets.token_bytes(32),
            room_shards=self.room_shards,
            connection_shards=self.connection_shards,
            redis_url=redis_url,
            key_prefix=settings.key_prefix,
            redis_timeout=settings.redis_timeout,
            persist_timeout=settings.persist_timeout,
            shard_hosts=self.shard_hosts,
            colocated=self.colocate,
        )
        self._app = pickle_app(self.server)
        self.directory = spec.directory()
        if self.colocate:
            await self._start_node_hosts()
        else:
            await self._start_shards_and_gateways()
        await drop_stale_gateways(self.directory, live=list(self.gateways))
        await self._publish_gateways()
        self.server.attach(LinkedRuntime(self.directory, None, on_close=self.stop_actors, port=self.port))
        self.server.deployment = self  # type: ignore[attr-defined]
        self._watch = asyncio.create_task(self._watch_loop(), name="mesh-ray-watch")

    async def _start_node_hosts(self) -> None:
        """Colocated: one :class:`NodeHost` per gateway, placed like gateways."""
        assert self.spec is not None
        nodes = await self._plan_gateway_nodes(self.spec.host_count)
        first = await self._spawn_node_host(0, nodes[0], self.port)
        self.port = first[1]
        await asyncio.gather(
            *(self._spawn_node_host(host, nodes[host], self.port) for host in range(1, len(nodes)))
        )

    async def _spawn_node_host(self, host: int, node_id: str | None, port: int) -> tuple[str, int]:
        """Create :class:`NodeHost` ``host`` (on ``node_id`` if it can) and start its gateway."""
        assert self.spec is not None
        # Hard affinity, as for gateways. If the node dies, Ray cannot restart the process there;
        # the supervisor then creates it again on another node (_restart_node_host).
        strategy = "SPREAD" if node_id is None else NodeAffinitySchedulingStrategy(node_id, soft=False)
        options = {
            "name": self.spec.shard_host_name(host),
            "namespace": self.spec.namespace,
            "max_restarts": -1,
            "num_cpus": 0,
            "max_concurrency": 10_000,
            "scheduling_strategy": strategy,
        }
        deadline = asyncio.get_running_loop().time() + 15.0
        while True:
            try:
                handle = (
                    ray.remote(NodeHost)
                    .options(**options)
                    .remote(self.spec, host, self._app, self._overrides())
                )
                break
            except ValueError:  # the name of a just-killed incarnation is not free yet
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        return await self._start_gateway(handle, port, host)

    async def _start_gateway(self, handle: Any, port: int, host: int | None = None) -> tuple[str, int]:
        """Start a new actor's gateway on ``port`` and follow it; the actor is removed if that fails."""
        try:
            gid, bound = await handle.start.remote(self.host, port)
            node = await handle.node_id.remote()
        except BaseException:
            ray.kill(handle, no_restart=True)
            raise
        self._register(gid, handle, node, host)
        return gid, int(bound)

    def _overrides(self) -> dict[str, Any]:
        """Settings every gateway's copy of the app must share with the deployment."""
        assert self.spec is not None
        return {
            "redis_url": self.spec.redis_url,
            "room_shards": self.spec.room_shards,
            "connection_shards": self.spec.connection_shards,
        }

    def _register(self, gateway_id: str, handle: Any, node_id: str, host: int | None = None) -> None:
        """Record a started gateway and follow it."""
        self.gateways[gateway_id] = handle
        self.gateway_nodes[gateway_id] = node_id
        if host is not None:
            self._node_hosts[gateway_id] = host
        self._followers[gateway_id] = asyncio.create_task(
            self._follow(gateway_id, handle), name=f"mesh-follow-{gateway_id}"
        )

    async def _start_shards_and_gateways(self) -> None:
        assert self.spec is not None
        spec = self.spec
        shard_actor = ray.remote(ShardHost)
        for host in range(spec.host_count):
            self.shards.append(
                shard_actor.options(
                    name=spec.shard_host_name(host),
                    namespace=spec.namespace,
                    max_restarts=-1,
                    num_cpus=0,
                    max_concurrency=10_000,
                ).remote(spec, host)
            )
        await asyncio.gather(*(shard.data_address.remote() for shard in self.shards))
        nodes = await self._plan_gateway_nodes(self.gateway_count)
        first = await self._spawn_gateway(self.port, nodes[0])
        self.port = first[1]
        await asyncio.gather(*(self._spawn_gateway(self.port, node) for node in nodes[1:]))

    async def _plan_gateway_nodes(self, count: int) -> list[str | None]:
        """Nodes for ``count`` new gateways: each goes to the alive node with the fewest gateways.

        Ray's SPREAD strategy is best effort and put zero-CPU actors on one node in tests, so the
        supervisor places gateways itself (on another node only when the chosen one cannot take
        the gateway). ``None`` entries (no node known) fall back to SPREAD.
        """
        nodes = await asyncio.to_thread(ray.nodes)
        # A drained node that has left the cluster is forgotten (its id never comes back).
        self.draining_nodes &= {node["NodeID"] for node in nodes if node.get("Alive")}
        load = {
            node["NodeID"]: 0
            for node in nodes
            if node.get("Alive") and node["NodeID"] not in self.draining_nodes
        }
        if not load:
            return [None] * count
        for node_id in self.gateway_nodes.values():
            if node_id in load:
                load[node_id] += 1
        plan: list[str | None] = []
        for _ in range(count):
            node_id = min(load, key=lambda n: load[n])
            load[node_id] += 1
            plan.append(node_id)
        return plan

    async def _spawn_gateway(self, port: int, node_id: str | None) -> tuple[str, int]:
        """Start one gateway on ``node_id`` (anywhere when that node cannot take it)."""
        try:
            return await self._spawn_gateway_on(port, node_id)
        except (ActorUnschedulableError, RayActorError):
            if node_id is None:
                raise
            logger.warning("node %s cannot take a gateway; letting Ray place it", node_id)
            return await self._spawn_gateway_on(port, None)

    async def _spawn_gateway_on(self, port: int, node_id: str | None) -> tuple[str, int]:
        assert self.spec is not None
        gateway_id = f"{self.spec.name}-gw-{uuid.uuid4().hex[:8]}"
        # Hard affinity: Ray's soft affinity was seen placing a gateway on another node while the
        # chosen one was still warming up its worker pool.
        strategy = "SPREAD" if node_id is None else NodeAffinitySchedulingStrategy(node_id, soft=False)
        handle = (
            ray.remote(GatewayHost)
            .options(
                name=gateway_id,
                namespace=self.spec.namespace,
                max_restarts=0,
                num_cpus=0,
                max_concurrency=10_000,
                scheduling_strategy=strategy,
            )
            .remote(self.spec, gateway_id, self._app, self._overrides())
        )
        return await self._start_gateway(handle, port)

    async def _follow(self, gateway_id: str, handle: Any) -> None:
        """Wait for the gateway to stop or die (one pending Ray call), then replace it."""
        try:
            try:
                status = await handle.until_stopped.remote()
            except Exception as error:  # RayActorError: the process died (or the call failed)
                logger.warning("gateway %s is gone (%s)", gateway_id, type(error).__name__)
                await self._gateway_died(gateway_id)
                return
            if status.drained:
                self._mark_draining(gateway_id)
            else:
                logger.warning("gateway %s stopped", gateway_id)
            await self._gateway_died(gateway_id, drained=True)
        except Exception:
            logger.exception("handling the end of gateway %s failed", gateway_id)

    def _mark_draining(self, gateway_id: str) -> None:
        node_id = self.gateway_nodes.get(gateway_id)
        logger.info("gateway %s was drained; no new gateways on node %s", gateway_id, node_id)
        if node_id is not None:
            self.draining_nodes.add(node_id)

    async def _publish_gateways(self) -> None:
        ids = list(self.gateways)
        self.directory.set_gateways(ids)
        await asyncio.gather(
            *(handle.set_gateways.remote(ids) for handle in self.gateways.values()), return_exceptions=True
        )

    async def _watch_loop(self) -> None:
        """Probe every gateway each ``watch_interval``: catches a gateway that hangs (alive, but
        not answering); deaths and drains are noticed sooner by :meth:`_follow`."""
        while True:
            await asyncio.sleep(self.watch_interval)
            for gateway_id, handle in list(self.gateways.items()):
                try:
                    status = await asyncio.wait_for(
                        handle.ping.remote(), timeout=max(5.0, self.watch_interval * 2)
                    )
                except (RayActorError, TimeoutError) as error:
                    logger.warning("gateway %s is gone (%s)", gateway_id, type(error).__name__)
                    if gateway_id in self._node_hosts:
                        ray.kill(handle, no_restart=False)  # hung: Ray restarts the process
                    await self._gateway_died(gateway_id)
                    continue
                except Exception:
                    # The actor answered with an error (its gateway process may be exiting, in
                    # which case the actor exits too and the next probe finds it gone).
                    logger.warning("gateway %s failed its liveness probe", gateway_id, exc_info=True)
                    continue
                if status.drained and gateway_id in self.gateways:
                    self._mark_draining(gateway_id)
                    await self._gateway_died(gateway_id, drained=True)

    async def _gateway_died(self, gateway_id: str, *, drained: bool = False) -> None:
        """Forget a dead or drained gateway, drop its connections, start a replacement."""
        handle = self.gateways.pop(gateway_id, None)
        if handle is None:
            return  # already handled (by the other of the probe and the follower)
        self.gateway_nodes.pop(gateway_id, None)
        follower = self._followers.pop(gateway_id, None)
        if follower is not None and follower is not asyncio.current_task():
            follower.cancel()
        host = self._node_hosts.pop(gateway_id, None)
        link = self.directory.forget_gateway(gateway_id)
        if isinstance(link, Link):
            await link.close()
        if host is not None:
            # Its shards died with it: bring them back before dropping the gateway's connections.
            await self._restart_node_host(host, handle, move=drained)
        else:
            ray.kill(handle, no_restart=True)
        dropped = await self._drop_gateway(gateway_id)
        logger.info("dropped %d connection(s) of gateway %s", dropped, gateway_id)
        if host is None and self.replace_dead_gateways:
            try:
                (node_id,) = await self._plan_gateway_nodes(1)
                await self._spawn_gateway(self.port, node_id)
            except Exception:
                logger.exception("could not start a replacement gateway")
        await self._publish_gateways()
        self.gateway_deaths.put_nowait((gateway_id, dropped))

    async def _drop_gateway(self, gateway_id: str, window: float = 15.0) -> int:
        """Drop a gone gateway's connections from every shard, retrying while a shard is
        unreachable (a restarting shard host; dropping twice is harmless)."""
        deadline = asyncio.get_running_loop().time() + window
        delay = 0.05
        while True:
            try:
                return await drop_gateway(self.directory, gateway_id)
            except CodeError as error:
                if error.code != "EUNAVAILABLE" or asyncio.get_running_loop().time() > deadline:
                    raise
                logger.info("dropping gateway %s: %s; retrying", gateway_id, error.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _restart_node_host(self, host: int, handle: Any, *, move: bool) -> None:
        """Start :class:`NodeHost` ``host``'s next incarnation: the one Ray restarts after a
        crash, or (``move``, after a drain) a new process on another node."""
        try:
            if not move:
                try:
                    gid, _ = await handle.start.remote(self.host, self.port)
                    self._register(gid, handle, await handle.node_id.remote(), host)
                    return
                except RayActorError:
                    logger.warning("node host %d did not come back; creating it again", host)
            ray.kill(handle, no_restart=True)
            (node_id,) = await self._plan_gateway_nodes(1)
            await self._spawn_node_host(host, node_id, self.port)
        except Exception:
            logger.exception("could not restart node host %d", host)

    async def kill_gateway(self, gateway_id: str) -> None:
        """Kill a gateway process abruptly (as a crash would); the supervisor notices it.

        With ``colocate`` Ray restarts the process (it hosts shards), as after a real crash.
        """
        ray.kill(self.gateways[gateway_id], no_restart=gateway_id not in self._node_hosts)

    async def kill_shard(self, kind: str, index: int, *, timeout: float = 30.0) -> None:
        """Kill a shard's process as a crash would, and wait until Ray restarted it.

        The process's other shards die with it. The restarted shards rebuild their slices from
        Redis on first use. (``ray.kill`` returns
        before the old process is gone; waiting for the new incarnation keeps callers from
        talking to a process that is about to vanish.)
        """
        assert self.spec is not None
        naming = room_shard_name if kind == "room" else connection_shard_name
        host = self.spec.host_of(naming(self.spec.name, index))
        handle = await asyncio.to_thread(ray.get_actor, host, self.spec.namespace)
        old = await handle.incarnation_id.remote()
        ray.kill(handle, no_restart=False)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if await handle.incarnation_id.remote() != old:
                    return
            except RayActorError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{kind} shard {index} did not come back within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def stop_actors(self) -> None:
        """Drain the gateways (clients see 1001), then remove every actor of the deployment."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for follower in self._followers.values():
            follower.cancel()
        self._followers.clear()
        self._node_hosts.clear()
        await asyncio.gather(*(h.stop.remote() for h in self.gateways.values()), return_exceptions=True)
        for handle in [*self.gateways.values(), *self.shards]:
            ray.kill(handle, no_restart=True)
        self.gateways.clear()
        self.gateway_nodes.clear()
        self.shards.clear()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None


async def deploy(server: MeshServer, **options: Any) -> RayDeployment:
    """Deploy ``server`` on Ray; ``server`` becomes a client handle of the deployment."""
    deployment = RayDeployment(server, **options)
    await deployment.start()
    return deployment


def drain_node(
    node_id: str | None = None, *, deployment: str | None = None, namespace: str = NAMESPACE
) -> dict[str, int]:
    """Drain every mesh gateway on a Ray node (this process's node by default), of every
    deployment: each closes its sockets with 1001 "going away" so clients reconnect to a gateway
    elsewhere, and its supervisor starts the replacement on another node.

    Run it before a node goes away (a KubeRay worker's preStop hook runs ``mesh-actors
    drain-node``). ``deployment`` (a :class:`RayDeployment`'s ``spec.name``) limits it to one
    deployment. Needs a connected Ray (:func:`init_ray`); blocking. Returns the number of
    connections each drained gateway had, by gateway id.
    """
    node_id = node_id or str(ray.get_runtime_context().get_node_id())
    handles = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        # Gateways are named <deployment>-gw-<id>; NodeHosts (shards and a gateway) <deployment>-node-<i>.
        if entry["namespace"] != namespace or ("-gw-" not in name and "-node-" not in name):
            continue
        if deployment is not None and not name.startswith((f"{deployment}-gw-", f"{deployment}-node-")):
            continue
        try:
            handle = ray.get_actor(name, namespace=namespace)
            if ray.get(handle.node_id.remote()) == node_id:
                handles.append((name, handle))
        except (ValueError, RayActorError):
            continue  # gone meanwhile
    drained: dict[str, int] = {}
    for _, handle in handles:
        try:
            gateway_id = ray.get(handle.current_gateway_id.remote())
            before = ray.get(handle.ping.remote()).connections
        except RayActorError:
            continue  # gone meanwhile
        try:
            drained[gateway_id] = int(ray.get(handle.drain.remote()))
        except RayActorError:
            # The supervisor removes a drained gateway as soon as it has stopped, which can beat
            # the drain's own reply: it was drained all the same.
            drained[gateway_id] = before
    return drained


def gateway_ids(deployment: RayDeployment) -> Iterable[str]:
    """The live gateway ids (convenience for tests and tools)."""
    return list(deployment.gateways)
