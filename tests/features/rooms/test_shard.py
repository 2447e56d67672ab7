"""RoomShard's logic alone, over the in-memory ports and a recording directory: no Redis, no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from mesh_actors.actors.registry import Slot
from mesh_actors.features.rooms.shard import RoomShard
from mesh_actors.protocol.errors import CodeError
from tests.features.directory import RecordingDirectory
from tests.features.memory import MemoryConnectionStore, MemoryRoomStore


@pytest.fixture
def registry() -> MemoryConnectionStore:
    """The connection registry the room store checks members against when it loads."""
    return MemoryConnectionStore()


@pytest.fixture
def store(registry: MemoryConnectionStore) -> MemoryRoomStore:
    return MemoryRoomStore(registry)


@pytest.fixture
def directory() -> RecordingDirectory:
    return RecordingDirectory("gw-1", "gw-2", "gw-3")


@pytest.fixture
def shard(store: MemoryRoomStore, directory: RecordingDirectory) -> RoomShard:
    return RoomShard(Slot(0, 1), store, directory)


async def joined(shard: RoomShard, *memberships: tuple[str, str, str]) -> None:
    """Join each ``(room, connection id, gateway id)``."""
    for room, cid, gateway_id in memberships:
        await shard.join(room, cid, gateway_id)


async def assert_no_trace(shard: RoomShard, store: MemoryRoomStore, cid: str, rooms: list[str]) -> None:
    """``cid`` is in none of ``rooms``, in memory or in the store."""
    assert await shard.rooms_of(cid) == []
    for room in rooms:
        assert cid not in await shard.members(room)
        assert not await shard.has_member(room, cid)
        assert cid not in store.members.get(room, set())
    assert cid not in store.rooms_of


# -- membership --------------------------------------------------------------------------------


async def test_join_returns_the_members_in_join_order(shard: RoomShard, store: MemoryRoomStore) -> None:
    assert await shard.join("r", "c3", "gw-1") == ["c3"]
    assert await shard.join("r", "c1", "gw-2") == ["c3", "c1"]
    assert await shard.join("r", "c2", "gw-1") == ["c3", "c1", "c2"]

    assert await shard.members("r") == ["c3", "c1", "c2"]
    assert await shard.has_member("r", "c1")
    assert not await shard.has_member("r", "c9")
    assert not await shard.has_member("other", "c1")
    assert await shard.rooms() == ["r"]
    assert store.members == {"r": {"c1", "c2", "c3"}}
    assert store.rooms_of == {"c1": {"r"}, "c2": {"r"}, "c3": {"r"}}


async def test_join_is_idempotent(
    shard: RoomShard, store: MemoryRoomStore, directory: RecordingDirectory
) -> None:
    await joined(shard, ("r", "c1", "gw-1"), ("r", "c2", "gw-2"))
    assert await shard.join("r", "c1", "gw-1") == ["c1", "c2"]  # not moved to the end

    assert await shard.members("r") == ["c1", "c2"]
    assert await shard.rooms_of("c1") == ["r"]
    assert store.members == {"r": {"c1", "c2"}}
    # Still one target per member: the fan-out index holds c1 once.
    assert await shard.broadcast("r", b"m") == 2
    assert directory.links["gw-1"].deliveries() == [(b"m", {"c1"})]


async def test_a_member_that_left_and_joins_again_is_the_newest(shard: RoomShard) -> None:
    await joined(shard, ("r", "c1", "gw-1"), ("r", "c2", "gw-1"))
    assert await shard.leave("r", "c1") is True
    assert await shard.join("r", "c1", "gw-1") == ["c2", "c1"]


async def test_leave_removes_the_member_and_an_empty_room(shard: RoomShard, store: MemoryRoomStore) -> None:
    await joined(shard, ("r", "c1", "gw-1"), ("r", "c2", "gw-2"), ("q", "c1", "gw-1"))

    assert await shard.leave("r", "c1") is True
    assert await shard.leave("r", "c1") is False
    assert await shard.leave("nowhere", "c1") is False

    assert await shard.members("r") == ["c2"]
    assert await shard.rooms_of("c1") == ["q"]
    assert store.members == {"r": {"c2"}, "q": {"c1"}}
    assert store.rooms_of == {"c1": {"q"}, "c2": {"r"}}

    assert await shard.leave("r", "c2") is True
    # A room exists while it has members.
    assert await shard.rooms() == ["q"]
    assert await shard.members("r") == []
    assert await shard.gateway_ids() == ["gw-1"]
    assert store.members == {"q": {"c1"}}
    assert store.rooms_of == {"c1": {"q"}}


async def test_rooms_of_lists_the_rooms_of_a_connection(shard: RoomShard) -> None:
    await joined(shard, ("b", "c1", "gw-1"), ("a", "c1", "gw-1"), ("c", "c2", "gw-1"))
    assert await shard.rooms_of("c1") == ["a", "b"]
    assert await shard.rooms_of("c2") == ["c"]
    assert await shard.rooms_of("c9") == []


async def test_drop_connection_returns_its_rooms_and_leaves_no_trace(
    shard: RoomShard, store: MemoryRoomStore
) -> None:
    await joined(
        shard,
        ("b", "c1", "gw-1"),
        ("a", "c1", "gw-1"),
        ("a", "c2", "gw-2"),
        ("solo", "c1", "gw-1"),
    )

    assert await shard.drop_connection("c1") == ["a", "b", "solo"]

    await assert_no_trace(shard, store, "c1", ["a", "b", "solo"])
    assert await shard.members("a") == ["c2"]
    assert await shard.rooms() == ["a"]
    assert await shard.gateway_ids() == ["gw-2"]  # c1 was gw-1's only member
    assert store.members == {"a": {"c2"}}
    assert store.rooms_of == {"c2": {"a"}}
    assert await shard.drop_connection("c1") == []  # idempotent
    assert await shard.drop_connection("never-joined") == []


async def test_drop_gateway_removes_its_members_and_returns_their_ids(
    shard: RoomShard, store: MemoryRoomStore, directory: RecordingDirectory
) -> None:
    await joined(
        shard,
        ("r1", "b1", "gw-2"),
        ("r1", "a1", "gw-1"),
        ("r2", "b1", "gw-2"),
        ("r2", "b2", "gw-2"),
        ("r3", "b2", "gw-2"),
    )

    assert await shard.drop_gateway("gw-2") == ["b1", "b2"]

    for cid in ("b1", "b2"):
        await assert_no_trace(shard, store, cid, ["r1", "r2", "r3"])
    assert await shard.members("r1") == ["a1"]
    assert await shard.rooms() == ["r1"]
    assert await shard.gateway_ids() == ["gw-1"]
    assert store.members == {"r1": {"a1"}}
    assert await shard.broadcast("r1", b"m") == 1
    assert directory.links["gw-2"].told == []
    assert await shard.drop_gateway("gw-2") == []


async def test_gateway_ids_are_the_gateways_holding_members(shard: RoomShard) -> None:
    assert await shard.gateway_ids() == []
    await joined(shard, ("r1", "c1", "gw-3"), ("r2", "c2", "gw-1"), ("r2", "c3", "gw-3"))
    assert await shard.gateway_ids() == ["gw-1", "gw-3"]
    await shard.leave("r2", "c2")
    assert await shard.gateway_ids() == ["gw-3"]


async def test_clear_removes_the_members_and_keeps_the_metadata(
    shard: RoomShard, store: MemoryRoomStore
) -> None:
    await joined(shard, ("r", "c1", "gw-1"), ("r", "c2", "gw-2"), ("q", "c1", "gw-1"))
    await shard.set_metadata("r", {"topic": "t"})

    assert await shard.clear("r") == ["c1", "c2"]

    assert await shard.members("r") == []
    assert await shard.rooms() == ["q"]
    assert await shard.rooms_of("c1") == ["q"]
    assert await shard.rooms_of("c2") == []
    assert await shard.get_metadata("r") == {"topic": "t"}
    assert store.members == {"q": {"c1"}}
    assert store.rooms_of == {"c1": {"q"}}
    assert orjson.loads(store.metadata["r"]) == {"topic": "t"}
    assert await shard.clear("r") == []


async def test_delete_removes_the_members_and_the_metadata(shard: RoomShard, store: MemoryRoomStore) -> None:
    await joined(shard, ("r", "c1", "gw-1"), ("q", "c1", "gw-1"))
    await shard.set_metadata("r", {"topic": "t"})
    await shard.set_metadata("q", {"topic": "kept"})

    assert await shard.delete("r") == ["c1"]

    assert await shard.members("r") == []
    assert await shard.rooms_of("c1") == ["q"]
    assert await shard.get_metadata("r") is None
    assert await shard.all_metadata() == [("q", {"topic": "kept"})]
    assert store.members == {"q": {"c1"}}
    assert set(store.metadata) == {"q"}
    # A room with metadata only is deleted too.
    assert await shard.delete("q") == ["c1"]
    await shard.set_metadata("meta-only", 1)
    assert await shard.delete("meta-only") == []
    assert await shard.all_metadata() == []
    assert store.is_empty()


# -- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "value", "expected"),
    [
        ("replace", {"b": {"y": 3}}, {"b": {"y": 3}}),
        ("merge", {"b": {"y": 3}, "c": 4}, {"a": 1, "b": {"y": 3}, "c": 4}),
        ("deepMerge", {"b": {"y": 3}, "c": 4}, {"a": 1, "b": {"x": 2, "y": 3}, "c": 4}),
        ("merge", "text", "text"),
    ],
)
async def test_set_metadata_combines_by_strategy(
    shard: RoomShard, store: MemoryRoomStore, strategy: str, value: Any, expected: Any
) -> None:
    # Metadata needs no members.
    assert await shard.set_metadata("r", {"a": 1, "b": {"x": 2}}) == {"a": 1, "b": {"x": 2}}
    assert await shard.set_metadata("r", value, strategy) == expected
    assert await shard.get_metadata("r") == expected
    assert orjson.loads(store.metadata["r"]) == expected
    assert await shard.rooms() == []


async def test_room_metadata_is_a_private_copy_and_survives_an_empty_room(shard: RoomShard) -> None:
    value = {"tags": ("a",)}
    await shard.join("r", "c1", "gw-1")
    assert await shard.set_metadata("r", value) == {"tags": ["a"]}
    value["tags"] = ("b",)
    await shard.leave("r", "c1")
    assert await shard.get_metadata("r") == {"tags": ["a"]}
    assert await shard.get_metadata("never-set") is None


async def test_an_unknown_strategy_or_a_value_that_is_not_json_changes_nothing(
    shard: RoomShard, store: MemoryRoomStore
) -> None:
    await shard.set_metadata("r", {"a": 1})
    with pytest.raises(ValueError, match="shallow"):
        await shard.set_metadata("r", {"b": 2}, "shallow")
    with pytest.raises(CodeError) as raised:
        await shard.set_metadata("r", {"b": {1, 2}}, "merge")
    assert raised.value.code == "EINVALID"
    assert await shard.get_metadata("r") == {"a": 1}
    assert orjson.loads(store.metadata["r"]) == {"a": 1}


async def test_concurrent_metadata_merges_never_lose_an_update(
    shard: RoomShard, store: MemoryRoomStore
) -> None:
    store.gate.hold()
    writes = asyncio.gather(*(shard.set_metadata("r", {f"k{i}": i}, "merge") for i in range(10)))
    await store.gate.until_waiting(10)
    store.gate.release()
    await writes
    assert await shard.get_metadata("r") == {f"k{i}": i for i in range(10)}
    assert orjson.loads(store.metadata["r"]) == {f"k{i}": i for i in range(10)}


# -- fan-out -----------------------------------------------------------------------------------


async def test_broadcast_tells_each_gateway_once_with_its_members(
    shard: RoomShard, directory: RecordingDirectory
) -> None:
    await joined(
        shard,
        ("r", "a1", "gw-1"),
        ("r", "b1", "gw-2"),
        ("r", "a2", "gw-1"),
        ("r", "a3", "gw-1"),
        ("other", "c1", "gw-3"),
    )
    message = b'{"command":"hello","payload":1}'

    assert await shard.broadcast("r", message) == 4

    gw1, gw2, gw3 = (directory.links[gid] for gid in ("gw-1", "gw-2", "gw-3"))
    assert gw1.deliveries() == [(message, {"a1", "a2", "a3"})]
    assert gw2.deliveries() == [(message, {"b1"})]
    assert gw3.told == []  # not a gateway of this room
    # The message is encoded once: every gateway gets the same bytes object.
    assert gw1.told[0][1][0] is message and gw2.told[0][1][0] is message
    # Targets are an immutable sequence without duplicates (links copy messages).
    targets = gw1.told[0][1][1]
    assert isinstance(targets, tuple) and len(targets) == 3


async def test_broadcast_leaves_out_the_excluded(shard: RoomShard, directory: RecordingDirectory) -> None:
    await joined(shard, ("r", "a1", "gw-1"), ("r", "a2", "gw-1"), ("r", "b1", "gw-2"))

    assert await shard.broadcast("r", b"m", exclude=["a1", "b1", "not-a-member"]) == 1

    assert directory.links["gw-1"].deliveries() == [(b"m", {"a2"})]
    # Nothing left for gw-2: it is not told at all.
    assert directory.links["gw-2"].told == []
    # Excluding is per message: the members stay.
    assert await shard.members("r") == ["a1", "a2", "b1"]
    assert await shard.broadcast("r", b"n", exclude={"a2"}) == 2
    assert directory.links["gw-1"].deliveries()[1] == (b"n", {"a1"})
    assert directory.links["gw-2"].deliveries() == [(b"n", {"b1"})]


async def test_broadcast_to_an_empty_room_tells_nobody(
    shard: RoomShard, directory: RecordingDirectory
) -> None:
    assert await shard.broadcast("nobody-here", b"m") == 0
    await shard.join("r", "c1", "gw-1")
    await shard.leave("r", "c1")
    await shard.set_metadata("r", {"topic": "t"})
    assert await shard.broadcast("r", b"m") == 0
    assert await shard.broadcast("other", b"m", exclude=["c1"]) == 0
    assert all(link.told == [] for link in directory.gateways())


async def test_broadcast_skips_a_gateway_it_has_no_link_to(
    shard: RoomShard, directory: RecordingDirectory
) -> None:
    await joined(shard, ("r", "a1", "gw-1"), ("r", "x1", "gw-gone"), ("r", "x2", "gw-gone"))
    assert await shard.broadcast("r", b"m") == 1  # counts only what was sent
    assert directory.links["gw-1"].deliveries() == [(b"m", {"a1"})]


# -- ordering ----------------------------------------------------------------------------------


async def test_a_pipelined_join_then_leave_leaves_no_member(shard: RoomShard, store: MemoryRoomStore) -> None:
    # Created together, the join's first step runs, then the leave's, as when a client sends both in
    # one write and the gateway forwards them in order to the room's single owner.
    members, left = await asyncio.gather(shard.join("r", "c1", "gw-1"), shard.leave("r", "c1"))
    assert (members, left) == (["c1"], True)
    assert await shard.members("r") == []
    assert await shard.rooms_of("c1") == []
    assert await shard.gateway_ids() == []
    assert store.is_empty()


async def test_a_leave_applies_while_the_joins_write_is_in_flight(
    shard: RoomShard, store: MemoryRoomStore, directory: RecordingDirectory
) -> None:
    await shard.join("r", "c0", "gw-2")
    store.gate.hold()
    both = asyncio.gather(shard.join("r", "c1", "gw-1"), shard.leave("r", "c1"))
    await store.gate.until_waiting(2)  # neither write is confirmed yet
    assert await shard.members("r") == ["c0"]
    assert await shard.broadcast("r", b"m") == 1
    assert directory.links["gw-1"].told == []
    store.gate.release()
    members, left = await both
    assert (members, left) == (["c0", "c1"], True)
    assert await shard.members("r") == ["c0"]
    assert store.members == {"r": {"c0"}}
    assert store.rooms_of == {"c0": {"r"}}


async def test_pipelined_join_then_drop_connection_leaves_no_member(
    shard: RoomShard, store: MemoryRoomStore
) -> None:
    store.gate.hold()
    both = asyncio.gather(
        shard.join("r", "c1", "gw-1"), shard.join("q", "c1", "gw-1"), shard.drop_connection("c1")
    )
    await store.gate.until_waiting(3)
    store.gate.release()
    assert tuple(await both) == (["c1"], ["c1"], ["q", "r"])
    assert await shard.rooms() == []
    assert store.is_empty()


# -- rebuild / flush ---------------------------------------------------------------------------


async def test_a_fresh_shard_rebuilt_from_the_store_holds_the_same_state(
    shard: RoomShard, store: MemoryRoomStore, registry: MemoryConnectionStore, directory: RecordingDirectory
) -> None:
    for cid, gateway_id in (("a1", "gw-1"), ("a2", "gw-1"), ("b1", "gw-2")):
        await registry.register(cid, gateway_id, None, None)
    await joined(
        shard,
        ("r1", "a1", "gw-1"),
        ("r1", "b1", "gw-2"),
        ("r1", "a2", "gw-1"),
        ("r2", "b1", "gw-2"),
    )
    await shard.set_metadata("r1", {"topic": "t"})
    await shard.set_metadata("meta-only", {"kept": True})

    fresh = RoomShard(Slot(0, 1), store, directory)
    assert await fresh.rebuild() == 2

    assert sorted(await fresh.rooms()) == ["r1", "r2"]
    assert sorted(await fresh.members("r1")) == ["a1", "a2", "b1"]
    assert await fresh.members("r2") == ["b1"]
    assert await fresh.rooms_of("b1") == ["r1", "r2"]
    assert await fresh.rooms_of("a1") == ["r1"]
    assert await fresh.get_metadata("r1") == {"topic": "t"}
    assert await fresh.get_metadata("meta-only") == {"kept": True}
    assert sorted(await fresh.all_metadata()) == [("meta-only", {"kept": True}), ("r1", {"topic": "t"})]
    assert await fresh.gateway_ids() == ["gw-1", "gw-2"]
    # The fan-out index came back: one tell per gateway, with that gateway's members.
    assert await fresh.broadcast("r1", b"m") == 3
    assert directory.links["gw-1"].deliveries() == [(b"m", {"a1", "a2"})]
    assert directory.links["gw-2"].deliveries() == [(b"m", {"b1"})]
    # ... and a drop of gw-2 removes exactly its members.
    assert await fresh.drop_gateway("gw-2") == ["b1"]
    assert await fresh.rooms() == ["r1"]
    assert store.members == {"r1": {"a1", "a2"}}


async def test_rebuild_drops_members_whose_connection_is_gone(
    shard: RoomShard, store: MemoryRoomStore, registry: MemoryConnectionStore, directory: RecordingDirectory
) -> None:
    await registry.register("alive", "gw-1", None, None)
    await joined(shard, ("r", "alive", "gw-1"), ("r", "ghost", "gw-2"), ("ghost-only", "ghost", "gw-2"))

    fresh = RoomShard(Slot(0, 1), store, directory)
    assert await fresh.rebuild() == 1

    assert await fresh.members("r") == ["alive"]
    assert await fresh.members("ghost-only") == []
    assert await fresh.rooms_of("ghost") == []
    assert await fresh.gateway_ids() == ["gw-1"]
    # Removed from the store too, never resurrected by a later rebuild.
    assert store.members == {"r": {"alive"}}
    assert store.rooms_of == {"alive": {"r"}}
    assert await fresh.broadcast("r", b"m") == 1
    assert directory.links["gw-2"].told == []


async def test_rebuild_replaces_what_the_shard_held(
    shard: RoomShard, store: MemoryRoomStore, registry: MemoryConnectionStore
) -> None:
    await registry.register("c1", "gw-1", None, None)
    await joined(shard, ("r", "c1", "gw-1"), ("q", "c2", "gw-2"))  # c2 is not registered
    await shard.set_metadata("q", 1)
    await store.clear("q", ["c2"], metadata=True)  # the store lost q meanwhile

    assert await shard.rebuild() == 1
    assert await shard.rooms() == ["r"]
    assert await shard.rooms_of("c2") == []
    assert await shard.get_metadata("q") is None
    assert await shard.gateway_ids() == ["gw-1"]


async def test_flush_waits_for_the_stores_writes(shard: RoomShard, store: MemoryRoomStore) -> None:
    assert await shard.flush() is True
    store.gate.hold()
    joining = asyncio.ensure_future(shard.join("r", "c1", "gw-1"))
    await store.gate.until_waiting(1)
    assert await shard.flush(timeout=0) is False
    store.gate.release()
    assert await shard.flush(timeout=5) is True
    assert await joining == ["c1"]
