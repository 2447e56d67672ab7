"""The control plane: connecting to Ray, and finding actors' data-plane addresses through it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import ray
from ray.exceptions import ActorDiedError

from ..link import LinkGoneError, Resolver

__all__ = ["NAMESPACE", "init_ray", "loopback_ray_environment", "node_id", "node_ip", "ray_resolver"]

NAMESPACE = "mesh-actors"
"""Ray namespace of every named actor of a deployment."""


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


def node_ip() -> str:
    """The address of this process's Ray node (links listen on it)."""
    return str(ray.util.get_node_ip_address())


def node_id() -> str:
    """The id of this process's Ray node."""
    return str(ray.get_runtime_context().get_node_id())


def ray_resolver(namespace: str, host_of: Callable[[str], str] = str) -> Callable[[str], Resolver]:
    """Resolvers that find the Ray actor hosting a mesh actor and ask it for its data-plane address.

    ``host_of`` maps a mesh actor's name to the name of the Ray actor that hosts it (a gateway
    hosts itself; a shard lives in a shard host).
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
