"""The Ray runtime: the same gateway and shard objects, placed on a Ray cluster.

Ray does placement (gateways spread over nodes, several per node sharing one port with
SO_REUSEPORT), naming, restarts and health; it is the control plane only. Actors talk over the
data-plane links of :mod:`mesh_actors.runtime.link`, finding each other's addresses through named
Ray actors (docs/ray.md). One module per concept:

- :mod:`.control`: connecting to Ray, resolving actors' link addresses;
- :mod:`.shipping`: the app value, pickled for the gateway processes;
- :mod:`.spec`: what every actor of a deployment knows, and which host runs which shard;
- :mod:`.hosts`: the Ray actors (``ShardHost``, ``GatewayHost``, ``NodeHost``);
- :mod:`.placement`: where they go and the Ray options they get;
- :mod:`.supervisor`: :class:`RayDeployment`, the driver that starts and supervises them;
- :mod:`.drain`: :func:`drain_node`, run before a node goes away.
"""

from __future__ import annotations

from .control import NAMESPACE, init_ray, loopback_ray_environment, ray_resolver
from .drain import drain_node
from .hosts import GatewayHost, GatewayStatus, HostedRuntime, NodeHost, ShardHost
from .shipping import pickle_app, unpickle_app
from .spec import DeploymentSpec, ShardName
from .supervisor import DriverRuntime, RayDeployment

__all__ = [
    "NAMESPACE",
    "DeploymentSpec",
    "DriverRuntime",
    "GatewayHost",
    "GatewayStatus",
    "HostedRuntime",
    "NodeHost",
    "RayDeployment",
    "ShardHost",
    "ShardName",
    "drain_node",
    "init_ray",
    "loopback_ray_environment",
    "pickle_app",
    "ray_resolver",
    "unpickle_app",
]
