"""A :class:`~mesh_actors.actors.ref.Directory` whose refs are data-plane links.

Placement (who runs where: Ray today, plain processes later) only has to supply a resolver per
actor name; linking is the same for every multi-process runtime, and generic over the owner
kinds: one list of refs per kind, named ``kind.actor_name(deployment, index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ...actors.ref import ActorRef, GatewayActor, Owner
from ...actors.registry import OwnerKind
from .client import Link, Resolver

__all__ = ["LinkDirectory"]

A = TypeVar("A", bound=Owner)


class LinkDirectory:
    """Links to every shard (by kind and index) and gateway (by id) of one deployment.

    ``resolver_for(actor_name)`` returns a coroutine function giving that actor's data-plane
    address; gateway ids are their actor names. Actors hosted by this process are reached
    directly instead (:meth:`add_local`).
    """

    def __init__(
        self,
        deployment: str,
        kinds: Sequence[OwnerKind[Any]],
        shard_counts: Mapping[str, int],
        token: bytes,
        resolver_for: Callable[[str], Resolver],
        *,
        call_timeout: float = 30.0,
    ) -> None:
        self._kinds = tuple(kinds)
        self._token = token
        self._resolver_for = resolver_for
        self._call_timeout = call_timeout
        self._shards: dict[str, list[ActorRef[Any]]] = {}
        self._shard_names: dict[str, tuple[str, int]] = {}
        """Actor name -> (kind name, index) of every shard."""
        for kind in self._kinds:
            names = [kind.actor_name(deployment, index) for index in range(shard_counts[kind.name])]
            self._shards[kind.name] = [self._link(name) for name in names]
            self._shard_names.update({name: (kind.name, index) for index, name in enumerate(names)})
        self._gateways: dict[str, ActorRef[GatewayActor]] = {}
        self._live_gateways: list[str] = []

    def _link(self, name: str) -> Link[Any]:
        return Link(name, self._resolver_for(name), self._token, call_timeout=self._call_timeout)

    def add_local(self, name: str, ref: ActorRef[Any]) -> None:
        """Reach actor ``name``, which this process hosts, through ``ref`` (a direct call).

        ``name`` is a shard's actor name or a gateway id (a local gateway is live).
        """
        place = self._shard_names.get(name)
        if place is not None:
            kind_name, index = place
            self._shards[kind_name][index] = ref
            return
        self._gateways[name] = ref
        if name not in self._live_gateways:
            self._live_gateways.append(name)

    async def set_gateways(self, gateway_ids: Iterable[str]) -> None:
        """The live gateways of the deployment (pushed by the supervisor on every change); the
        links to gateways that are gone are closed."""
        self._live_gateways = list(gateway_ids)
        for gateway_id in set(self._gateways) - set(self._live_gateways):
            await _close(self._gateways.pop(gateway_id))

    async def forget_gateway(self, gateway_id: str) -> None:
        """Drop (and close) the link to a gateway that is gone."""
        if gateway_id in self._live_gateways:
            self._live_gateways.remove(gateway_id)
        ref = self._gateways.pop(gateway_id, None)
        if ref is not None:
            await _close(ref)

    # -- Directory -------------------------------------------------------------------------------

    def kinds(self) -> Sequence[OwnerKind[Any]]:
        return self._kinds

    def shard(self, kind: OwnerKind[A], key: str) -> ActorRef[A]:
        shards = self._shards[kind.name]
        return shards[kind.shard_of(key, len(shards))]

    def shards(self, kind: OwnerKind[A]) -> Sequence[ActorRef[A]]:
        return self._shards[kind.name]

    def gateway(self, gateway_id: str) -> ActorRef[GatewayActor] | None:
        ref = self._gateways.get(gateway_id)
        if ref is None:
            ref = self._gateways[gateway_id] = self._link(gateway_id)
        return ref

    def gateways(self) -> Sequence[ActorRef[GatewayActor]]:
        return [ref for gid in self._live_gateways if (ref := self.gateway(gid)) is not None]

    async def close(self) -> None:
        """Close every link."""
        for ref in [*(ref for refs in self._shards.values() for ref in refs), *self._gateways.values()]:
            await _close(ref)


async def _close(ref: ActorRef[Any]) -> None:
    if isinstance(ref, Link):
        await ref.close()
