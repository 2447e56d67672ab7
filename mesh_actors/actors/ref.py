"""How actors reach each other: typed refs, the directory, and which calls are safe to retry.

Actor code only sees :class:`ActorRef` and :class:`Directory`. In the inline runtime a ref is a
direct call on an object in the same process; in the multi-process runtimes it is a data-plane
link to another process. Messages must therefore be immutable values (str, bytes, tuples, numbers,
JSON values): links copy arguments, the inline runtime does not.

A call names the method object itself, ``await ref.call(RoomShard.join, room, cid, gateway)``, so
mypy checks the arguments and the result type; a link sends only the method's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from .registry import OwnerKind

__all__ = ["ActorRef", "Directory", "GatewayActor", "Owner", "is_retry_safe", "method_name", "retry_safe"]

A_co = TypeVar("A_co", covariant=True)
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_RETRY_SAFE = "__mesh_retry_safe__"


def retry_safe(method: F) -> F:
    """Mark an actor method as free of side effects: a link may run it again when the connection
    drops mid-call (the actor restarted after its address was resolved). Declared where the
    method is defined, so the list can never drift from the code."""
    setattr(method, _RETRY_SAFE, True)
    return method


def is_retry_safe(method: Callable[..., Any]) -> bool:
    """True if ``method`` was marked with :func:`retry_safe`."""
    return bool(getattr(method, _RETRY_SAFE, False))


def method_name(method: Callable[..., Any]) -> str:
    """The name a link sends for ``method`` (the attribute looked up on the remote actor)."""
    return method.__name__


class ActorRef(Protocol[A_co]):
    """A link to one actor of class ``A_co``."""

    @overload
    async def call(
        self, method: Callable[Concatenate[A_co, P], Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...

    @overload
    async def call(
        self, method: Callable[Concatenate[A_co, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...

    async def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``method(actor, *args)`` on the actor and return its result (raising its exception)."""
        ...

    def tell(self, method: Callable[Concatenate[A_co, P], Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run ``method(actor, *args)`` without waiting; failures are logged by the link."""
        ...


class Owner(Protocol):
    """What every owner actor (a shard of any kind) does besides its own methods.

    Runtimes use only these, so they start, rebuild, flush and clean up every registered kind
    without knowing what it owns.
    """

    async def rebuild(self) -> int:
        """Load this shard's slice from its store before serving (after a start or a restart);
        returns how many entries it loaded."""
        ...

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued writes reached the store; False if ``timeout`` elapsed first."""
        ...

    async def gateway_ids(self) -> list[str]:
        """Ids of the gateways this shard holds state for (to find dead ones after a restart)."""
        ...

    async def drop_gateway(self, gateway_id: str) -> list[str]:
        """Forget what this shard holds for the connections of a dead gateway; returns their ids."""
        ...

    async def drop_connection(self, connection_id: str) -> object:
        """Forget what this shard holds for a connection that went away (idempotent)."""
        ...


retry_safe(Owner.gateway_ids)


class GatewayActor(Protocol):
    """What owners and the server API ask of a gateway: write pre-encoded messages to sockets."""

    def deliver(
        self, message: bytes, targets: Sequence[str] | None = None, exclude: Collection[str] = ()
    ) -> int:
        """Write one encoded message to local connections (``targets`` None: all of them)."""
        ...


OwnerT = TypeVar("OwnerT", bound=Owner)


class Directory(Protocol):
    """Finds the actor that owns a key (stable sharding for a given shard count) and gateways."""

    def kinds(self) -> Sequence[OwnerKind[Any]]:
        """The owner kinds of the deployment, in rebuild order."""
        ...

    def shard(self, kind: OwnerKind[OwnerT], key: str) -> ActorRef[OwnerT]:
        """The shard of ``kind`` that owns ``key``."""
        ...

    def shards(self, kind: OwnerKind[OwnerT]) -> Sequence[ActorRef[OwnerT]]:
        """Every shard of ``kind``, by index."""
        ...

    def gateway(self, gateway_id: str) -> ActorRef[GatewayActor] | None:
        """The gateway with this id, or ``None`` if it is unknown (gone)."""
        ...

    def gateways(self) -> Sequence[ActorRef[GatewayActor]]:
        """Every live gateway."""
        ...
