"""A recording stand-in for the directory and the gateways an owner talks to (unit tests only).

The owner is what is under test; the gateways only receive its messages, so they record them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mesh_actors.actors.ref import GatewayActor, method_name
from mesh_actors.actors.registry import OwnerKind

__all__ = ["RecordingDirectory", "RecordingGateway"]


class RecordingGateway:
    """An ``ActorRef[GatewayActor]`` that records what it is told."""

    def __init__(self, gateway_id: str) -> None:
        self.id = gateway_id
        self.told: list[tuple[str, tuple[Any, ...]]] = []
        """``(method name, arguments)`` of every ``tell``, in order."""

    async def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"an owner must not wait on a gateway: call({method_name(method)})")

    def tell(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        assert not kwargs, "messages are positional"
        self.told.append((method_name(method), args))

    def deliveries(self) -> list[tuple[bytes, set[str]]]:
        """``(message, target ids)`` of each ``deliver`` told to this gateway."""
        assert all(name == method_name(GatewayActor.deliver) for name, _ in self.told)
        return [(args[0], set(args[1])) for _, args in self.told]


class RecordingDirectory:
    """Knows the gateways given to it; no shards (a unit test holds its shard itself)."""

    def __init__(self, *gateway_ids: str) -> None:
        self.links = {gid: RecordingGateway(gid) for gid in gateway_ids}

    def kinds(self) -> Sequence[OwnerKind[Any]]:
        return ()

    def shard(self, kind: OwnerKind[Any], key: str) -> Any:
        raise AssertionError(f"unexpected shard lookup: {kind.name} {key!r}")

    def shards(self, kind: OwnerKind[Any]) -> Sequence[Any]:
        raise AssertionError(f"unexpected shard lookup: {kind.name}")

    def gateway(self, gateway_id: str) -> RecordingGateway | None:
        return self.links.get(gateway_id)

    def gateways(self) -> Sequence[RecordingGateway]:
        return list(self.links.values())
