"""Deployment upkeep shared by every runtime: forgetting the connections of a gateway that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from ..actors.links import Directory

__all__ = ["drop_gateway", "drop_stale_gateways"]


async def drop_gateway(directory: Directory, gateway_id: str) -> int:
    """Remove every connection of a dead gateway from all shards; returns how many were dropped.

    Its sockets died with it, so its connections, their metadata and their room memberships are
    ghosts. Shards drop them from memory and Redis.
    """
    results = await asyncio.gather(
        *(shard.call("drop_gateway", gateway_id) for shard in directory.connection_shards()),
        *(shard.call("drop_gateway", gateway_id) for shard in directory.room_shards()),
    )
    connection_results = results[: len(directory.connection_shards())]
    return sum(len(dropped) for dropped in connection_results)


async def drop_stale_gateways(directory: Directory, live: Collection[str]) -> dict[str, int]:
    """Drop every gateway that holds connections in the shards but is not in ``live``."""
    known = await asyncio.gather(*(shard.call("gateway_ids") for shard in directory.connection_shards()))
    stale = {gateway_id for ids in known for gateway_id in ids} - set(live)
    return {gateway_id: await drop_gateway(directory, gateway_id) for gateway_id in sorted(stale)}
