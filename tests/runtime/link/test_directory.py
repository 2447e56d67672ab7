"""LinkDirectory: one list of refs per registered owner kind, named by the kind."""

from __future__ import annotations

from typing import Any

from mesh_actors.actors.sharding import shard_index
from mesh_actors.features import KINDS
from mesh_actors.features.connections import CONNECTIONS
from mesh_actors.features.rooms import ROOMS
from mesh_actors.runtime.inline import InlineRef
from mesh_actors.runtime.link import Link, LinkDirectory, LinkGoneError


def directory(rooms: int = 3, connections: int = 2) -> LinkDirectory:
    def resolver_for(name: str) -> Any:
        async def resolve() -> tuple[str, int]:
            raise LinkGoneError(f"{name} is not running in this test")

        return resolve

    counts = {ROOMS.name: rooms, CONNECTIONS.name: connections}
    return LinkDirectory("dep", KINDS, counts, b"token", resolver_for)


async def test_one_link_per_shard_of_every_kind_named_by_the_kind() -> None:
    links = directory()
    try:
        assert list(links.kinds()) == list(KINDS)
        names = {kind.name: [ref.name for ref in links.shards(kind)] for kind in KINDS}  # type: ignore[attr-defined]
        assert names == {
            "rooms": ["dep-rooms-0", "dep-rooms-1", "dep-rooms-2"],
            "connections": ["dep-connections-0", "dep-connections-1"],
        }
        for key in ("lobby", "a", "b", "chat-42"):
            assert links.shard(ROOMS, key) is links.shards(ROOMS)[shard_index(key, 3)]
    finally:
        await links.close()


async def test_local_actors_are_reached_directly() -> None:
    links = directory()
    try:
        local_shard, local_gateway = InlineRef(object()), InlineRef(object())
        links.add_local("dep-rooms-1", local_shard)
        assert links.shards(ROOMS)[1] is local_shard
        assert all(isinstance(ref, Link) for ref in links.shards(CONNECTIONS))
        links.add_local("dep-gw-1", local_gateway)  # not a shard name: a gateway of this process
        assert links.gateway("dep-gw-1") is local_gateway
        assert list(links.gateways()) == [local_gateway]
    finally:
        await links.close()


async def test_gateways_that_are_gone_are_forgotten() -> None:
    links = directory()
    try:
        await links.set_gateways(["gw-a", "gw-b"])
        first = links.gateway("gw-a")
        assert isinstance(first, Link) and len(links.gateways()) == 2
        await links.set_gateways(["gw-b"])
        assert [ref.name for ref in links.gateways()] == ["gw-b"]  # type: ignore[attr-defined]
        assert links.gateway("gw-a") is not first  # a new link: the old one was closed
        await links.forget_gateway("gw-b")
        assert list(links.gateways()) == []
    finally:
        await links.close()
