"""Forgetting connections everywhere, generic over the owner kinds (no kind is named here).

A connection that went away, and every connection of a gateway that died, must vanish from every
owner, or it stays behind as a ghost (a room member nobody can reach). The owners are asked in
dependency order (``OwnerKind.rebuild_after``): the connection registry first, so that an owner
that checks the registry after a change (a server-side room add) sees the connection gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

from .ref import Directory, Owner
from .registry import OwnerKind, rebuild_order
from .retry import retry_unavailable

__all__ = ["drop_connection", "drop_gateway", "drop_stale_gateways"]


async def drop_connection(directory: Directory, connection_id: str, *, window: float = 15.0) -> None:
    """Remove a departed connection from every owner, retrying while one restarts (idempotent)."""
    for wave in rebuild_order(directory.kinds()):
        await asyncio.gather(
            *(
                retry_unavailable(partial(ref.call, Owner.drop_connection, connection_id), window=window)
                for kind in wave
                for ref in _holders(directory, kind, connection_id)
            )
        )


def _holders(directory: Directory, kind: OwnerKind[Any], connection_id: str) -> Sequence[Any]:
    """The shards of ``kind`` that may hold state for the connection."""
    if kind.sharded_by_connection:
        return [directory.shard(kind, connection_id)]
    return directory.shards(kind)


async def drop_gateway(directory: Directory, gateway_id: str, *, window: float = 15.0) -> int:
    """Remove every connection of a dead gateway from every owner; returns how many there were.

    Its sockets died with it, so its connections, their metadata and their memberships are ghosts.
    Retried while an owner restarts (dropping twice is harmless).
    """
    dropped: set[str] = set()
    for wave in rebuild_order(directory.kinds()):
        results = await asyncio.gather(
            *(
                retry_unavailable(partial(ref.call, Owner.drop_gateway, gateway_id), window=window)
                for kind in wave
                for ref in directory.shards(kind)
            )
        )
        for ids in results:
            dropped.update(ids)
    return len(dropped)


async def drop_stale_gateways(directory: Directory, live: Collection[str]) -> dict[str, int]:
    """Drop every gateway that owners hold state for but that is not in ``live``."""
    known = await asyncio.gather(
        *(ref.call(Owner.gateway_ids) for kind in directory.kinds() for ref in directory.shards(kind))
    )
    stale = {gateway_id for ids in known for gateway_id in ids} - set(live)
    return {gateway_id: await drop_gateway(directory, gateway_id) for gateway_id in sorted(stale)}
