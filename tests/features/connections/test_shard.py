"""ConnectionShard's logic alone, over the in-memory port: no Redis, no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from mesh_actors.actors.registry import Slot
from mesh_actors.features.connections.shard import ConnectionShard
from mesh_actors.protocol.errors import CodeError
from tests.features.memory import MemoryConnectionStore


@pytest.fixture
def store() -> MemoryConnectionStore:
    return MemoryConnectionStore()


@pytest.fixture
def shard(store: MemoryConnectionStore) -> ConnectionShard:
    return ConnectionShard(Slot(0, 1), store)


def stored_json(raw: bytes | None) -> Any:
    assert raw is not None
    return orjson.loads(raw)


# -- register / unregister ---------------------------------------------------------------------


async def test_register_records_the_gateway_in_memory_and_in_the_store(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw-1")
    await shard.register("c2", "gw-2")
    await shard.register("c3", "gw-1")

    assert await shard.exists("c1")
    assert not await shard.exists("c4")
    assert await shard.locate(["c3", "c4", "c1"]) == {"c3": "gw-1", "c1": "gw-1"}
    assert await shard.gateway_ids() == ["gw-1", "gw-2"]
    assert store.connections == {"c1": "gw-1", "c2": "gw-2", "c3": "gw-1"}
    assert store.gateway_connections == {"gw-1": {"c1", "c3"}, "gw-2": {"c2"}}
    # No auth data: nothing stored as auth or metadata.
    assert store.auth == {} and store.metadata == {}
    assert await shard.get_auth("c1") is None
    assert await shard.get_metadata("c1") is None


async def test_truthy_auth_is_also_the_initial_metadata(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw", {"user": "u1", "roles": ("admin",)})

    # Stored as a JSON round trip would give it back (the tuple is a list).
    expected = {"user": "u1", "roles": ["admin"]}
    assert await shard.get_auth("c1") == expected
    assert await shard.get_metadata("c1") == expected
    assert stored_json(store.auth["c1"]) == expected
    assert stored_json(store.metadata["c1"]) == expected


@pytest.mark.parametrize("auth", [{}, [], "", 0, False])
async def test_falsy_auth_is_auth_data_but_not_metadata(
    shard: ConnectionShard, store: MemoryConnectionStore, auth: Any
) -> None:
    await shard.register("c1", "gw", auth)

    assert await shard.get_auth("c1") == auth
    assert type(await shard.get_auth("c1")) is type(auth)
    assert await shard.get_metadata("c1") is None
    assert stored_json(store.auth["c1"]) == auth
    assert "c1" not in store.metadata


async def test_auth_data_is_a_private_copy(shard: ConnectionShard) -> None:
    auth: dict[str, Any] = {"user": "u1", "tags": ["a"]}
    await shard.register("c1", "gw", auth)
    auth["tags"].append("b")
    auth["user"] = "someone else"

    assert await shard.get_auth("c1") == {"user": "u1", "tags": ["a"]}
    assert await shard.get_metadata("c1") == {"user": "u1", "tags": ["a"]}


async def test_unregister_forgets_everything_of_the_connection(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw-1", {"user": "u1"})
    await shard.register("c2", "gw-2", {"user": "u2"})

    assert await shard.unregister("c1") is True
    assert await shard.unregister("c1") is False  # idempotent; says it was not registered

    assert not await shard.exists("c1")
    assert await shard.locate(["c1", "c2"]) == {"c2": "gw-2"}
    assert await shard.get_metadata("c1") is None
    assert await shard.get_auth("c1") is None
    assert await shard.gateway_ids() == ["gw-2"]
    assert [cid for cid, _ in await shard.connections()] == ["c2"]
    assert store.connections == {"c2": "gw-2"}
    assert store.gateway_connections == {"gw-2": {"c2"}}
    assert set(store.metadata) == {"c2"} and set(store.auth) == {"c2"}


async def test_drop_connection_is_unregister(shard: ConnectionShard, store: MemoryConnectionStore) -> None:
    await shard.register("c1", "gw", {"user": "u1"})

    assert await shard.drop_connection("c1") is True
    assert await shard.drop_connection("c1") is False
    assert not await shard.exists("c1")
    assert store.is_empty()


async def test_drop_gateway_forgets_its_connections_and_returns_their_ids(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("a1", "gw-a", {"user": "a1"})
    await shard.register("b1", "gw-b")
    await shard.register("a2", "gw-a")
    await shard.set_metadata("a2", {"x": 1})

    assert await shard.drop_gateway("gw-a") == ["a1", "a2"]

    assert await shard.locate(["a1", "a2", "b1"]) == {"b1": "gw-b"}
    assert await shard.get_metadata("a2") is None
    assert await shard.gateway_ids() == ["gw-b"]
    assert store.connections == {"b1": "gw-b"}
    assert store.gateway_connections == {"gw-b": {"b1"}}
    assert store.metadata == {} and store.auth == {}
    assert await shard.drop_gateway("gw-a") == []
    assert await shard.drop_gateway("gw-unknown") == []


async def test_connections_are_listed_in_registration_order(shard: ConnectionShard) -> None:
    order = ["c3", "c1", "c2", "c0"]
    for cid in order:
        await shard.register(cid, "gw")
    await shard.unregister("c1")
    await shard.register("c1", "gw")  # registered again: now the newest

    listed = await shard.connections()
    assert [cid for cid, _ in listed] == ["c3", "c2", "c0", "c1"]
    times = [since for _, since in listed]
    assert times == sorted(times) and all(since > 0 for since in times)


async def test_a_pipelined_register_and_unregister_leave_nothing(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    store.gate.hold()
    both = asyncio.gather(shard.register("c1", "gw", {"user": "u1"}), shard.unregister("c1"))
    await store.gate.until_waiting(2)  # both ran while neither write was confirmed
    assert not await shard.exists("c1")
    store.gate.release()
    _, was_registered = await both
    assert was_registered is True
    assert store.is_empty()


# -- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "value", "expected"),
    [
        ("replace", {"b": {"y": 3}}, {"b": {"y": 3}}),
        ("merge", {"b": {"y": 3}, "c": 4}, {"a": 1, "b": {"y": 3}, "c": 4}),
        ("deepMerge", {"b": {"y": 3}, "c": 4}, {"a": 1, "b": {"x": 2, "y": 3}, "c": 4}),
        ("merge", [1, 2], [1, 2]),  # not both objects: the new value
        ("deepMerge", None, None),
    ],
)
async def test_set_metadata_combines_by_strategy(
    shard: ConnectionShard, store: MemoryConnectionStore, strategy: str, value: Any, expected: Any
) -> None:
    await shard.register("c1", "gw")
    assert await shard.set_metadata("c1", {"a": 1, "b": {"x": 2}}) == {"a": 1, "b": {"x": 2}}

    assert await shard.set_metadata("c1", value, strategy) == expected
    assert await shard.get_metadata("c1") == expected
    assert stored_json(store.metadata["c1"]) == expected


async def test_merge_over_no_metadata_is_the_new_value(shard: ConnectionShard) -> None:
    await shard.register("c1", "gw")
    assert await shard.set_metadata("c1", {"a": 1}, "merge") == {"a": 1}
    await shard.register("c2", "gw")
    assert await shard.set_metadata("c2", {"a": {"b": 1}}, "deepMerge") == {"a": {"b": 1}}


async def test_set_metadata_stores_a_private_copy(shard: ConnectionShard) -> None:
    await shard.register("c1", "gw")
    value: dict[str, Any] = {"list": [1], "pair": (1, 2)}
    assert await shard.set_metadata("c1", value) == {"list": [1], "pair": [1, 2]}
    value["list"].append(2)
    assert await shard.get_metadata("c1") == {"list": [1], "pair": [1, 2]}


async def test_set_metadata_of_an_unknown_connection_is_enoconn(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    with pytest.raises(CodeError) as raised:
        await shard.set_metadata("nobody", {"a": 1})
    assert raised.value.code == "ENOCONN"
    assert raised.value.name == "ConnectionError"
    assert "nobody" in raised.value.message
    await shard.register("c1", "gw")
    await shard.unregister("c1")
    with pytest.raises(CodeError) as raised:
        await shard.set_metadata("c1", {"a": 1})
    assert raised.value.code == "ENOCONN"
    assert store.metadata == {}
    assert await shard.get_metadata("nobody") is None


async def test_an_unknown_strategy_is_refused_and_changes_nothing(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    # docs/protocol.md#connection-metadata: a ValueError here, EINVALID through the built-in (whose
    # payload validation refuses the strategy before any owner is called).
    await shard.register("c1", "gw")
    await shard.set_metadata("c1", {"a": 1})
    with pytest.raises(ValueError, match="shallow"):
        await shard.set_metadata("c1", {"b": 2}, "shallow")
    assert await shard.get_metadata("c1") == {"a": 1}
    assert stored_json(store.metadata["c1"]) == {"a": 1}


async def test_a_value_that_is_not_json_is_einvalid_and_changes_nothing(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw")
    await shard.set_metadata("c1", {"a": 1})
    with pytest.raises(CodeError) as raised:
        await shard.set_metadata("c1", {"b": object()}, "merge")
    assert raised.value.code == "EINVALID"
    assert await shard.get_metadata("c1") == {"a": 1}
    assert stored_json(store.metadata["c1"]) == {"a": 1}


async def test_concurrent_merges_never_lose_an_update(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw")
    store.gate.hold()  # every write is in flight while the next merge runs
    writes = asyncio.gather(*(shard.set_metadata("c1", {f"k{i}": i}, "merge") for i in range(20)))
    await store.gate.until_waiting(20)
    store.gate.release()
    results = await writes
    everything = {f"k{i}": i for i in range(20)}
    assert results[-1] == everything
    assert await shard.get_metadata("c1") == everything
    assert stored_json(store.metadata["c1"]) == everything


async def test_get_metadata_many_answers_none_where_unset(shard: ConnectionShard) -> None:
    await shard.register("c1", "gw", {"user": "u1"})
    await shard.register("c2", "gw")
    assert await shard.get_metadata_many(["c2", "c1", "c9"]) == {
        "c2": None,
        "c1": {"user": "u1"},
        "c9": None,
    }


# -- rebuild / flush ---------------------------------------------------------------------------


async def test_a_fresh_shard_rebuilt_from_the_store_holds_the_same_state(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw-1", {"user": "u1"})
    await shard.register("c2", "gw-2", 0)
    await shard.register("c3", "gw-1")
    await shard.set_metadata("c2", {"a": {"b": 1}})
    await shard.set_metadata("c2", {"a": {"c": 2}}, "deepMerge")
    await shard.register("gone", "gw-1")
    await shard.unregister("gone")

    fresh = ConnectionShard(Slot(0, 1), store)
    assert await fresh.rebuild() == 3
    assert await fresh.locate(["c1", "c2", "c3", "gone"]) == {"c1": "gw-1", "c2": "gw-2", "c3": "gw-1"}
    assert await fresh.get_metadata_many(["c1", "c2", "c3"]) == {
        "c1": {"user": "u1"},
        "c2": {"a": {"b": 1, "c": 2}},
        "c3": None,
    }
    assert await fresh.get_auth("c1") == {"user": "u1"}
    assert await fresh.get_auth("c2") == 0
    assert await fresh.get_auth("c3") is None
    assert await fresh.gateway_ids() == ["gw-1", "gw-2"]
    listed = await fresh.connections()
    assert [cid for cid, _ in listed] == ["c1", "c2", "c3"]  # the store's order
    assert [since for _, since in listed] == sorted(since for _, since in listed)
    # It serves as the old one did.
    assert await fresh.set_metadata("c3", {"n": 1}, "merge") == {"n": 1}
    assert await fresh.drop_gateway("gw-1") == ["c1", "c3"]
    assert store.connections == {"c2": "gw-2"}


async def test_rebuild_replaces_what_the_shard_held(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    await shard.register("c1", "gw-1")
    await shard.register("c2", "gw-2", {"user": "u2"})
    await store.unregister("c2", "gw-2")  # the store lost c2 (e.g. it was cleaned up meanwhile)
    assert await shard.rebuild() == 1
    assert await shard.locate(["c1", "c2"]) == {"c1": "gw-1"}
    assert await shard.get_auth("c2") is None
    assert await shard.get_metadata("c2") is None
    assert await shard.gateway_ids() == ["gw-1"]


async def test_flush_waits_for_the_stores_writes(
    shard: ConnectionShard, store: MemoryConnectionStore
) -> None:
    assert await shard.flush() is True
    store.gate.hold()
    registering = asyncio.ensure_future(shard.register("c1", "gw"))
    await store.gate.until_waiting(1)
    assert await shard.flush(timeout=0) is False
    store.gate.release()
    assert await shard.flush(timeout=5) is True
    await registering
