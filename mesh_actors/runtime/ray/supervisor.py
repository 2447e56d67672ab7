"""The driver of a Ray deployment: starts, supervises and stops the host actors.

It follows every gateway (one pending Ray call each, :meth:`RayDeployment._follow`) and probes
them periodically; when one dies or is drained, its connections are removed from every owner (no
ghosts), the survivors learn the new gateway list, and a replacement is started on the same port.
The driver's server API (a ``MeshServer``) is bound to a :class:`DriverRuntime`: links to the
deployment, no gateway of its own.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, ActorUnschedulableError, RayActorError

from ...actors.cleanup import drop_gateway, drop_stale_gateways
from ...actors.registry import OwnerKind
from ...app import Api
from ...store.redis import EmbeddedRedis
from ..link import LinkDirectory
from .control import NAMESPACE, init_ray
from .placement import create_gateway_host, create_node_host, create_shard_host, plan_nodes
from .shipping import pickle_app
from .spec import DeploymentSpec, with_shard_counts

__all__ = ["DriverRuntime", "RayDeployment"]

logger = logging.getLogger(__name__)

_DROP_WINDOW = 15.0
"""Seconds the drop of a dead gateway's connections keeps retrying an owner that restarts."""
_RESTART_WINDOW = 15.0
"""Seconds the supervisor waits for Ray to restart a crashed ``NodeHost`` before replacing it."""


class DriverRuntime:
    """What the driver's server API runs on: links to the deployment, and no gateway."""

    def __init__(self, deployment: RayDeployment) -> None:
        self.deployment = deployment

    @property
    def directory(self) -> LinkDirectory:
        return self.deployment.links

    @property
    def gateway(self) -> None:
        return None

    @property
    def port(self) -> int:
        """The port the deployment's gateways share."""
        return self.deployment.port

    async def close(self) -> None:
        """Drain the gateways and remove every actor (``server.close()``)."""
        await self.deployment.stop()


class RayDeployment:
    """Starts, supervises and stops one deployment of an app on Ray.

    ``server`` is the driver's server API (a ``MeshServer``): its app is shipped to the gateways,
    and once started it is bound to the deployment (its methods reach every gateway and shard;
    ``server.close()`` stops the deployment). ``shard_counts`` (by kind name, e.g. ``{"rooms": 4}``)
    override the app's shard count settings.
    """

    def __init__(
        self,
        server: Api,
        *,
        address: str | None = None,
        gateways: int = 2,
        shard_counts: Mapping[str, int] | None = None,
        shard_hosts: int | None = None,
        host: str | None = None,
        port: int | None = None,
        watch_interval: float = 5.0,
        replace_dead_gateways: bool = True,
        colocate: bool | None = None,
    ) -> None:
        if gateways < 1:
            raise ValueError("a deployment needs at least one gateway")
        self.server = server
        self.app = with_shard_counts(server.app, shard_counts or {})
        """The app as deployed (the server's, with ``shard_counts`` applied)."""
        settings = self.app.settings
        self.address = address
        self.gateway_count = gateways
        self.colocate = settings.colocate if colocate is None else colocate
        """Run the shards inside the gateways' processes (``NodeHost``), ``gateways`` of them."""
        requested = shard_hosts or settings.shard_hosts
        self.shard_hosts = gateways if self.colocate else (requested or 0)
        if self.colocate and (requested or gateways) != gateways:
            raise ValueError(
                "with colocate, the shards live in the gateways: shard_hosts must equal gateways"
            )
        total = sum(kind.shard_count(settings) for kind in self.app.kinds)
        if not self.colocate and self.shard_hosts > total:
            raise ValueError(f"shard_hosts={self.shard_hosts} exceeds the {total} shards it would host")
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
        """Nodes a gateway was drained on (``drain_node``): no new gateways go there."""
        self.shards: list[Any] = []
        """The ``ShardHost`` actors."""
        self.spec: DeploymentSpec | None = None
        self.directory: LinkDirectory | None = None
        """The driver's links to the deployment (once started)."""
        self._embedded: EmbeddedRedis | None = None
        self._app = b""
        self._watch: asyncio.Task[None] | None = None
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._node_hosts: dict[str, int] = {}
        """With ``colocate``: the host index of each live gateway's ``NodeHost``."""
        self.gateway_deaths: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        """``(gateway id, connections dropped)`` for each gateway found dead (tests wait on it)."""

    @property
    def links(self) -> LinkDirectory:
        """The driver's links to the deployment (raises before :meth:`start`)."""
        if self.directory is None:
            raise RuntimeError("the deployment is not started")
        return self.directory

    def shard_count(self, kind: OwnerKind[Any]) -> int:
        """How many shards of ``kind`` the deployment runs."""
        return kind.shard_count(self.app.settings)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the shards (rebuilt from Redis), then the gateways, then start supervising.

        If any step fails (a taken port, an unreachable Redis), every actor created so far is
        removed before the error propagates.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        init_ray(self.address)
        redis_url = self.app.settings.redis_url
        if redis_url is None:
            self._embedded = EmbeddedRedis()
            redis_url = await asyncio.to_thread(self._embedded.start)
        self.spec = spec = DeploymentSpec(
            name=f"mesh-{uuid.uuid4().hex[:10]}",
            namespace=NAMESPACE,
            token=secrets.token_bytes(32),
            kinds=self.app.kinds,
            settings=self.app.with_settings(redis_url=redis_url).settings,
            shard_hosts=self.shard_hosts,
            colocated=self.colocate,
        )
        self._app = pickle_app(self.app)
        self.directory = spec.directory()
        if self.colocate:
            await self._start_node_hosts()
        else:
            await self._start_shards_and_gateways()
        await drop_stale_gateways(self.directory, live=list(self.gateways))
        await self._publish_gateways()
        self.server.bind(DriverRuntime(self))
        self._watch = asyncio.create_task(self._watch_loop(), name="mesh-ray-watch")

    async def _start_shards_and_gateways(self) -> None:
        assert self.spec is not None
        self.shards.extend(create_shard_host(self.spec, host) for host in range(self.spec.host_count))
        await asyncio.gather(*(shard.data_address.remote() for shard in self.shards))
        nodes = await self._plan_gateway_nodes(self.gateway_count)
        _, self.port = await self._spawn_gateway(self.port, nodes[0])
        await asyncio.gather(*(self._spawn_gateway(self.port, node) for node in nodes[1:]))

    async def _start_node_hosts(self) -> None:
        """Colocated: one ``NodeHost`` per gateway, placed like gateways."""
        assert self.spec is not None
        nodes = await self._plan_gateway_nodes(self.spec.host_count)
        _, self.port = await self._spawn_node_host(0, nodes[0], self.port)
        await asyncio.gather(
            *(self._spawn_node_host(host, nodes[host], self.port) for host in range(1, len(nodes)))
        )

    async def stop(self) -> None:
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
        if self.directory is not None:
            await self.directory.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            self._embedded = None

    # -- starting gateways -----------------------------------------------------------------------

    async def _plan_gateway_nodes(self, count: int) -> list[str | None]:
        """Nodes for ``count`` new gateways (:func:`.placement.plan_nodes`)."""
        nodes = await asyncio.to_thread(ray.nodes)
        # A drained node that has left the cluster is forgotten (its id never comes back).
        self.draining_nodes &= {node["NodeID"] for node in nodes if node.get("Alive")}
        return plan_nodes(nodes, self.gateway_nodes.values(), self.draining_nodes, count)

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
        handle = create_gateway_host(self.spec, gateway_id, self._app, node_id)
        return await self._start_gateway(handle, port)

    async def _spawn_node_host(self, host: int, node_id: str | None, port: int) -> tuple[str, int]:
        """Create ``NodeHost`` ``host`` (on ``node_id``) and start its gateway."""
        assert self.spec is not None
        handle = await create_node_host(self.spec, host, self._app, node_id)
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

    def _register(self, gateway_id: str, handle: Any, node_id: str, host: int | None = None) -> None:
        """Record a started gateway and follow it."""
        self.gateways[gateway_id] = handle
        self.gateway_nodes[gateway_id] = node_id
        if host is not None:
            self._node_hosts[gateway_id] = host
        self._followers[gateway_id] = asyncio.create_task(
            self._follow(gateway_id, handle), name=f"mesh-follow-{gateway_id}"
        )

    async def _publish_gateways(self) -> None:
        ids = list(self.gateways)
        await self.links.set_gateways(ids)
        await asyncio.gather(
            *(handle.set_gateways.remote(ids) for handle in self.gateways.values()), return_exceptions=True
        )

    # -- supervision -----------------------------------------------------------------------------

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
        await self.links.forget_gateway(gateway_id)
        if host is not None:
            # Its shards died with it: bring them back before dropping the gateway's connections.
            await self._restart_node_host(host, handle, move=drained)
        else:
            ray.kill(handle, no_restart=True)
        dropped = await drop_gateway(self.links, gateway_id, window=_DROP_WINDOW)
        logger.info("dropped %d connection(s) of gateway %s", dropped, gateway_id)
        if host is None and self.replace_dead_gateways:
            try:
                (node_id,) = await self._plan_gateway_nodes(1)
                await self._spawn_gateway(self.port, node_id)
            except Exception:
                logger.exception("could not start a replacement gateway")
        await self._publish_gateways()
        self.gateway_deaths.put_nowait((gateway_id, dropped))

    async def _restart_node_host(self, host: int, handle: Any, *, move: bool) -> None:
        """Start ``NodeHost`` ``host``'s next incarnation: the one Ray restarts after a crash,
        or (``move``, after a drain) a new process on another node."""
        try:
            if not move and await self._start_restarted(host, handle):
                return
            ray.kill(handle, no_restart=True)
            (node_id,) = await self._plan_gateway_nodes(1)
            await self._spawn_node_host(host, node_id, self.port)
        except Exception:
            logger.exception("could not restart node host %d", host)

    async def _start_restarted(self, host: int, handle: Any, window: float = _RESTART_WINDOW) -> bool:
        """Start the gateway of the incarnation Ray is restarting; False if it does not come back.

        While Ray restarts the process its calls fail with ``ActorUnavailableError``: keep asking
        for ``window`` seconds rather than replacing a process that is about to be back (its shards'
        links wait for it, while a replacement would fail them).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        reason: RayActorError
        while True:
            try:
                gid, _ = await handle.start.remote(self.host, self.port)
                self._register(gid, handle, await handle.node_id.remote(), host)
                return True
            except ActorUnavailableError as error:
                if loop.time() >= deadline:
                    reason = error
                    break
                await asyncio.sleep(0.1)
            except RayActorError as error:
                reason = error
                break
        logger.warning("node host %d did not come back (%s); creating it again", host, type(reason).__name__)
        return False

    # -- fault injection (tests, chaos tooling) --------------------------------------------------

    async def kill_gateway(self, gateway_id: str) -> None:
        """Kill a gateway process abruptly (as a crash would); the supervisor notices it.

        With ``colocate`` Ray restarts the process (it hosts shards), as after a real crash.
        """
        ray.kill(self.gateways[gateway_id], no_restart=gateway_id not in self._node_hosts)

    async def kill_shard(self, kind: OwnerKind[Any], index: int, *, timeout: float = 30.0) -> None:
        """Kill the process of shard ``index`` of ``kind`` as a crash would, and wait until Ray
        restarted it.

        The process's other shards die with it. The restarted shards rebuild their slices from
        Redis on first use. (``ray.kill`` returns before the old process is gone; waiting for the
        new incarnation keeps callers from talking to a process that is about to vanish.)
        """
        assert self.spec is not None
        host = self.spec.host_of(kind.actor_name(self.spec.name, index))
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
                raise TimeoutError(f"{kind.name} shard {index} did not come back within {timeout:g} s")
            await asyncio.sleep(0.05)
