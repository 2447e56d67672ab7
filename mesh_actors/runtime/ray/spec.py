"""What every actor of one deployment knows: names, settings, and which host runs which shard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...actors.registry import OwnerKind
from ...app import App
from ...settings import MeshSettings
from ..link import LinkDirectory
from .control import ray_resolver

__all__ = ["DeploymentSpec", "ShardName", "with_shard_counts"]


@dataclass(frozen=True, slots=True)
class ShardName:
    """One shard of a deployment: its kind, its index, its actor name."""

    kind: OwnerKind[Any]
    index: int
    name: str


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything an actor of one deployment needs to find the others, for any owner kinds."""

    name: str
    """The deployment's name (``mesh-<random>``): the prefix of its actors' names."""
    namespace: str
    token: bytes
    """The shared secret a link opens with."""
    kinds: tuple[OwnerKind[Any], ...]
    """The owner kinds, in registration order."""
    settings: MeshSettings
    """The settings every process of the deployment shares (Redis, key prefix, shard counts)."""
    shard_hosts: int = 0
    """Processes hosting the shards; 0 means one per shard index (the largest shard count)."""
    colocated: bool = False
    """The shard hosts are ``NodeHost`` processes, each running a gateway too."""

    def shard_count(self, kind: OwnerKind[Any]) -> int:
        """How many shards of ``kind`` the deployment has."""
        return kind.shard_count(self.settings)

    @property
    def shard_counts(self) -> dict[str, int]:
        """The shard count of every kind, by kind name."""
        return {kind.name: self.shard_count(kind) for kind in self.kinds}

    @property
    def host_count(self) -> int:
        """How many shard hosts the deployment has."""
        return self.shard_hosts or max(self.shard_counts.values(), default=1)

    def overrides(self) -> dict[str, Any]:
        """The settings each gateway's copy of the app must share with the deployment."""
        shared = {kind.shards_setting: self.shard_count(kind) for kind in self.kinds}
        return {"redis_url": self.settings.redis_url, **shared}

    def shard_names(self) -> list[ShardName]:
        """Every shard, kind by kind in registration order: the order hosts are dealt."""
        return [
            ShardName(kind, index, kind.actor_name(self.name, index))
            for kind in self.kinds
            for index in range(self.shard_count(kind))
        ]

    def shard_host_name(self, host: int) -> str:
        """The Ray actor name of shard host ``host`` (``-node-`` when it runs a gateway too)."""
        return f"{self.name}-{'node' if self.colocated else 'shards'}-{host}"

    def hosted_by(self, host: int) -> list[ShardName]:
        """The shards host ``host`` runs: every ``host_count``-th of :meth:`shard_names`, so with
        the default host count host ``i`` runs shard ``i`` of each kind."""
        return self.shard_names()[host :: self.host_count]

    def host_of(self, name: str) -> str:
        """The Ray actor hosting mesh actor ``name`` (gateways host themselves, except a
        ``NodeHost``'s, whose ids are ``<node host name>-gw-<incarnation>``)."""
        for position, shard in enumerate(self.shard_names()):
            if shard.name == name:
                return self.shard_host_name(position % self.host_count)
        if self.colocated and name.startswith(f"{self.name}-node-"):
            return name.split("-gw-", 1)[0]
        return name

    def directory(self) -> LinkDirectory:
        """Links to every actor of the deployment (each process makes its own)."""
        return LinkDirectory(
            self.name, self.kinds, self.shard_counts, self.token, ray_resolver(self.namespace, self.host_of)
        )


def with_shard_counts(app: App, counts: Mapping[str, int]) -> App:
    """``app`` with the shard count settings of the kinds named in ``counts`` changed."""
    if not counts:
        return app
    by_name = {kind.name: kind for kind in app.kinds}
    unknown = sorted(set(counts) - set(by_name))
    if unknown:
        raise ValueError(f"unknown owner kinds {unknown}; the app has {sorted(by_name)}")
    return app.with_settings(**{by_name[name].shards_setting: count for name, count in counts.items()})
