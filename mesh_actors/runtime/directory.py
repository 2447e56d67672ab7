"""A :class:`~mesh_actors.actors.links.Directory` whose refs are data-plane links.

Placement (who runs where: Ray today, plain processes later) only has to supply a resolver per
actor name; linking is the same for every multi-process runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..actors.links import ActorRef
from ..actors.sharding import shard_index
from .link import Link, Resolver

__all__ = ["READ_METHODS", "LinkDirectory", "connection_shard_name", "room_shard_name"]

READ_METHODS = frozenset(
    {
        "members",
        "has_member",
        "rooms",
        "get_metadata",
        "get_metadata_many",
        "all_metadata",
        "locate",
        "exists",
        "connections",
        "rooms_of",
        "get_auth",
        "gateway_ids",
    }
)
"""Shard methods without side effects: safe to retry when a link drops mid-call."""


def room_shard_name(deployment: str, index: int) -> str:
    """The actor name of a RoomShard."""
    return f"{deployment}-room-{index}"


def connection_shard_name(deployment: str, index: int) -> str:
    """The actor name of a ConnectionShard."""
    return f"{deployment}-conn-{index}"


class LinkDirectory:
    """Links to every shard (by index) and gateway (by id) of one deployment.

    ``resolver_for(actor_name)`` returns a coroutine function giving that actor's data-plane
    address; gateway ids are their actor names.
    """

    def __init__(
        self,
        deployment: str,
        room_shards: int,
        connection_shards: int,
        token: bytes,
        resolver_for: Callable[[str], Resolver],
        *,
        call_timeout: float = 30.0,
    ) -> None:
        self._token = token
        self._resolver_for = resolver_for
        self._call_timeout = call_timeout
        self._room_shards: list[ActorRef] = [
            self._link(room_shard_name(deployment, i)) for i in range(room_shards)
        ]
        self._connection_shards: list[ActorRef] = [
            self._link(connection_shard_name(deployment, i)) for i in range(connection_shards)
        ]
        self._gateways: dict[str, ActorRef] = {}
        self._live_gateways: list[str] = []

    def _link(self, name: str) -> Link:
        return Link(
            name,
            self._resolver_for(name),
            self._token,
            call_timeout=self._call_timeout,
            retry_methods=READ_METHODS,
        )

    def add_local_shard(self, name: str, ref: ActorRef) -> None:
        """Reach the shard named ``name``, which lives in this process, directly."""
        for shards in (self._room_shards, self._connection_shards):
            for index, link in enumerate(shards):
                if isinstance(link, Link) and link.name == name:
                    shards[index] = ref
                    return
        raise KeyError(f"no shard named {name}")

    def add_local(self, gateway_id: str, ref: ActorRef) -> None:
        """Reach a gateway of this process directly instead of through a link."""
        self._gateways[gateway_id] = ref
        if gateway_id not in self._live_gateways:
            self._live_gateways.append(gateway_id)

    def set_gateways(self, gateway_ids: Iterable[str]) -> list[Any]:
        """The live gateways of the deployment (pushed by the supervisor on every change).

        Returns the links to gateways that are gone, for the caller to close.
        """
        self._live_gateways = list(gateway_ids)
        gone = set(self._gateways) - set(self._live_gateways)
        return [self._gateways.pop(gateway_id) for gateway_id in gone]

    def room_shard(self, room: str) -> ActorRef:
        return self._room_shards[shard_index(room, len(self._room_shards))]

    def connection_shard(self, connection_id: str) -> ActorRef:
        return self._connection_shards[shard_index(connection_id, len(self._connection_shards))]

    def room_shards(self) -> Sequence[ActorRef]:
        return self._room_shards

    def connection_shards(self) -> Sequence[ActorRef]:
        return self._connection_shards

    def gateway(self, gateway_id: str) -> ActorRef | None:
        ref = self._gateways.get(gateway_id)
        if ref is None:
            ref = self._gateways[gateway_id] = self._link(gateway_id)
        return ref

    def gateways(self) -> Sequence[ActorRef]:
        return [ref for gid in self._live_gateways if (ref := self.gateway(gid)) is not None]

    def forget_gateway(self, gateway_id: str) -> Any:
        """Drop the link to a gateway that is gone; returns it (to be closed) or ``None``."""
        if gateway_id in self._live_gateways:
            self._live_gateways.remove(gateway_id)
        return self._gateways.pop(gateway_id, None)

    async def close(self) -> None:
        """Close every link."""
        for ref in [*self._room_shards, *self._connection_shards, *self._gateways.values()]:
            if isinstance(ref, Link):
                await ref.close()
