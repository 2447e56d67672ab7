"""How actors reach each other: the interface every runtime implements.

Actor code only sees :class:`ActorRef` and :class:`Directory`. In the inline runtime a ref is a
direct call on an object in the same process; in the Ray runtime it is a data-plane link to another
process. Messages must therefore be immutable values (str, bytes, tuples, numbers, JSON values):
Ray copies arguments, the inline runtime does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["ActorRef", "Directory"]


class ActorRef(Protocol):
    """A link to one actor."""

    async def call(self, method: str, *args: Any) -> Any:
        """Run ``method(*args)`` on the actor and return its result (raising its exception)."""
        ...

    def tell(self, method: str, *args: Any) -> None:
        """Run ``method(*args)`` on the actor without waiting; failures are logged by the link."""
        ...


class Directory(Protocol):
    """Finds the actor that owns a key; the sharding is stable for a given shard count."""

    def room_shard(self, room: str) -> ActorRef:
        """The RoomShard that owns ``room``."""
        ...

    def connection_shard(self, connection_id: str) -> ActorRef:
        """The ConnectionShard that owns ``connection_id``."""
        ...

    def room_shards(self) -> Sequence[ActorRef]:
        """Every RoomShard."""
        ...

    def connection_shards(self) -> Sequence[ActorRef]:
        """Every ConnectionShard."""
        ...

    def gateway(self, gateway_id: str) -> ActorRef | None:
        """The gateway with this id, or ``None`` if it is unknown (gone)."""
        ...

    def gateways(self) -> Sequence[ActorRef]:
        """Every live gateway."""
        ...
