"""Where the actors of a deployment go, and the Ray options they are created with."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .hosts import GatewayHost, NodeHost, ShardHost
from .spec import DeploymentSpec

__all__ = ["create_gateway_host", "create_node_host", "create_shard_host", "plan_nodes"]

_COMMON: Mapping[str, Any] = {"num_cpus": 0, "max_concurrency": 10_000}
"""Every host actor: no CPU reserved (they are I/O bound), and calls served concurrently."""
_NAME_FREE_WINDOW = 15.0
"""Seconds to wait for the name of a just-killed actor to become free again."""


def plan_nodes(
    nodes: Sequence[Mapping[str, Any]], gateway_nodes: Iterable[str], excluded: set[str], count: int
) -> list[str | None]:
    """Nodes for ``count`` new gateways: each goes to the alive node with the fewest gateways.

    ``nodes`` is what ``ray.nodes()`` returns, ``gateway_nodes`` the node of each live gateway;
    ``excluded`` nodes (draining) get none. ``None`` entries (no node known) mean "let Ray choose".
    Ray's SPREAD strategy is best effort and put zero-CPU actors on one node in tests, so the
    supervisor places gateways itself.
    """
    load = {node["NodeID"]: 0 for node in nodes if node.get("Alive") and node["NodeID"] not in excluded}
    if not load:
        return [None] * count
    for node_id in gateway_nodes:
        if node_id in load:
            load[node_id] += 1
    plan: list[str | None] = []
    for _ in range(count):
        node_id = min(load, key=lambda n: load[n])
        load[node_id] += 1
        plan.append(node_id)
    return plan


def _on(node_id: str | None) -> Any:
    # Hard affinity: Ray's soft affinity was seen placing a gateway on another node while the
    # chosen one was still warming up its worker pool.
    return "SPREAD" if node_id is None else NodeAffinitySchedulingStrategy(node_id, soft=False)


def create_shard_host(spec: DeploymentSpec, host: int) -> Any:
    """Shard host ``host``; Ray restarts it whenever it dies (its shards rebuild from Redis)."""
    options = {"name": spec.shard_host_name(host), "namespace": spec.namespace, "max_restarts": -1}
    return ray.remote(ShardHost).options(**options, **_COMMON).remote(spec, host)


def create_gateway_host(spec: DeploymentSpec, gateway_id: str, app: bytes, node_id: str | None) -> Any:
    """A gateway on ``node_id``; never restarted by Ray (its sockets died with it): the
    supervisor replaces it."""
    options = {"name": gateway_id, "namespace": spec.namespace, "max_restarts": 0}
    return (
        ray.remote(GatewayHost)
        .options(**options, **_COMMON, scheduling_strategy=_on(node_id))
        .remote(spec, gateway_id, app)
    )


async def create_node_host(spec: DeploymentSpec, host: int, app: bytes, node_id: str | None) -> Any:
    """Node host ``host`` on ``node_id``; Ray restarts it where it was when it dies. If the node
    dies, Ray cannot restart it there: the supervisor then creates it again on another node."""
    options = {
        "name": spec.shard_host_name(host),
        "namespace": spec.namespace,
        "max_restarts": -1,
        "scheduling_strategy": _on(node_id),
    }
    deadline = asyncio.get_running_loop().time() + _NAME_FREE_WINDOW
    while True:
        try:
            return ray.remote(NodeHost).options(**options, **_COMMON).remote(spec, host, app)
        except ValueError:  # the name of a just-killed incarnation is not free yet
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
