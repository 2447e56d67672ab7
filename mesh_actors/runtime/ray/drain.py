"""Draining a node before it goes away: its gateways close their sockets, clients move elsewhere."""

from __future__ import annotations

from typing import Any

import ray
from ray import ObjectRef
from ray.exceptions import RayActorError

from .control import NAMESPACE

__all__ = ["drain_node"]


def _value(ref: ObjectRef[Any]) -> Any:
    """The result of one Ray call (blocking)."""
    return ray.get(ref)


def drain_node(
    node_id: str | None = None, *, deployment: str | None = None, namespace: str = NAMESPACE
) -> dict[str, int]:
    """Drain every mesh gateway on a Ray node (this process's node by default), of every
    deployment: each closes its sockets with 1001 "going away" so clients reconnect to a gateway
    elsewhere, and its supervisor starts the replacement on another node.

    Run it before a node goes away (a KubeRay worker's preStop hook runs ``mesh-actors
    drain-node``). ``deployment`` (a ``RayDeployment``'s ``spec.name``) limits it to one
    deployment. Needs a connected Ray (``init_ray``); blocking. Returns the number of
    connections each drained gateway had, by gateway id.
    """
    node_id = node_id or str(ray.get_runtime_context().get_node_id())
    handles: list[Any] = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        # Gateways are named <deployment>-gw-<id>; NodeHosts (shards and a gateway) <deployment>-node-<i>.
        if entry["namespace"] != namespace or ("-gw-" not in name and "-node-" not in name):
            continue
        if deployment is not None and not name.startswith((f"{deployment}-gw-", f"{deployment}-node-")):
            continue
        try:
            handle = ray.get_actor(name, namespace=namespace)
            if _value(handle.node_id.remote()) == node_id:
                handles.append(handle)
        except (ValueError, RayActorError):
            continue  # gone meanwhile
    drained: dict[str, int] = {}
    for handle in handles:
        try:
            gateway_id = _value(handle.current_gateway_id.remote())
            before = _value(handle.ping.remote()).connections
        except RayActorError:
            continue  # gone meanwhile
        try:
            drained[gateway_id] = int(_value(handle.drain.remote()))
        except RayActorError:
            # The supervisor removes a drained gateway as soon as it has stopped, which can beat
            # the drain's own reply: it was drained all the same.
            drained[gateway_id] = before
    return drained
