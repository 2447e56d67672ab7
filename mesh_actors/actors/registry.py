"""The owner-kind registry: what a runtime needs to know to run one kind of state owner.

Each feature package declares one :class:`OwnerKind` (its name, the setting with its shard count,
how keys map to shards, its actor class and how to build its storage port). Runtimes start,
place, link, rebuild, restart and clean up every registered kind without naming any, so adding a
kind is one new package plus one entry in ``mesh_actors.features.KINDS``
(docs/adding-a-feature.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .ref import Directory, Owner
from .sharding import shard_index

__all__ = ["OwnerKind", "Slot", "check_kinds", "rebuild_order"]

A = TypeVar("A", bound=Owner)


@dataclass(frozen=True, slots=True)
class Slot:
    """Which shard an owner actor is: ``index`` of ``count`` shards of its kind."""

    index: int
    count: int

    def owns(self, key: str) -> bool:
        """True if ``key`` hashes to this shard."""
        return shard_index(key, self.count) == self.index


@dataclass(frozen=True, eq=False)
class OwnerKind(Generic[A]):
    """One kind of state owner (rooms, connections, ...) as the runtimes see it."""

    name: str
    """Short plural name, e.g. ``"rooms"``: part of actor names and log lines."""
    shards_setting: str
    """The settings field that holds this kind's shard count, e.g. ``"room_shards"``."""
    actor: Callable[[Slot, Any, Directory], A]
    """The owner actor class: ``actor(slot, store, directory)``."""
    store: Callable[[Any, Slot], Any]
    """Builds the shard's storage port from the runtime's storage backend
    (``mesh_actors.store.redis.RedisBackend`` today)."""
    sharded_by_connection: bool = False
    """True if keys are connection ids: a connection's state is then on one shard of this kind
    (else any shard may hold some, and a departed connection is dropped from all of them)."""
    rebuild_after: tuple[str, ...] = ()
    """Kinds whose shards must have rebuilt before this kind's (it reads their stored state)."""
    shard_of: Callable[[str, int], int] = field(default=shard_index)
    """How a key maps to a shard index, given the shard count (stable across processes)."""

    def shard_count(self, settings: Any) -> int:
        """The number of shards of this kind under ``settings``."""
        return int(getattr(settings, self.shards_setting))

    def actor_name(self, deployment: str, index: int) -> str:
        """The name of shard ``index`` in a multi-process deployment."""
        return f"{deployment}-{self.name}-{index}"

    def group(self, keys: Iterable[str], count: int) -> dict[int, list[str]]:
        """Group keys by the index of the shard that owns them, keeping their order."""
        groups: dict[int, list[str]] = {}
        shard_of = self.shard_of
        for key in keys:
            groups.setdefault(shard_of(key, count), []).append(key)
        return groups

    def create(self, slot: Slot, backend: Any, directory: Directory) -> A:
        """A new shard: its storage port over ``backend``, then the actor (not yet rebuilt)."""
        return self.actor(slot, self.store(backend, slot), directory)

    def __repr__(self) -> str:
        return f"OwnerKind({self.name!r})"


def rebuild_order(kinds: Iterable[OwnerKind[Any]]) -> list[list[OwnerKind[Any]]]:
    """Kinds grouped in waves: each wave only depends on kinds of earlier waves.

    Shards of one wave rebuild concurrently; a kind that reads another's stored state (rooms
    check members against the connection registry) waits for it.
    """
    pending: dict[str, OwnerKind[Any]] = {kind.name: kind for kind in kinds}
    done: set[str] = set()
    waves: list[list[OwnerKind[Any]]] = []
    while pending:
        # A dependency that is not registered at all does not hold anything up.
        wave = [
            kind
            for kind in pending.values()
            if all(dep in done or dep not in pending for dep in kind.rebuild_after)
        ]
        if not wave:
            raise ValueError(f"owner kinds depend on each other in a cycle: {sorted(pending)}")
        waves.append(wave)
        for kind in wave:
            done.add(kind.name)
            del pending[kind.name]
    return waves


def check_kinds(kinds: Sequence[OwnerKind[Any]]) -> None:
    """Refuse duplicate names and dependencies on kinds that are not registered."""
    names = [kind.name for kind in kinds]
    if len(set(names)) != len(names):
        raise ValueError(f"owner kind names must be unique: {names}")
    for kind in kinds:
        missing = set(kind.rebuild_after) - set(names)
        if missing:
            raise ValueError(f"owner kind {kind.name!r} rebuilds after unknown kinds {sorted(missing)}")
