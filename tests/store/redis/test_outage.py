"""A Redis outage: commands answer EUNAVAILABLE, gateways stay up, state converges when it returns."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import orjson
import pytest
import redis.asyncio as aioredis

from mesh_actors.store.redis import EmbeddedRedis
from tests.conftest import ServerFactory, expose_test_commands, unique, url_of
from tests.wire import raw_client


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone, so it can be paused (SIGSTOP) without disturbing others."""
    with EmbeddedRedis() as embedded:
        yield embedded


async def test_redis_outage_and_recovery(
    make_any_server: ServerFactory, private_redis: EmbeddedRedis
) -> None:
    server = await make_any_server(
        setup=expose_test_commands, redis_url=private_redis.url, persist_timeout=0.5, redis_timeout=0.3
    )
    room = unique("outage")
    pid = private_redis.pid
    assert pid is not None
    async with raw_client(url_of(server)) as a:
        assert (await a.call("mesh/join-room", {"roomName": room}))["success"] is True
        os.kill(pid, signal.SIGSTOP)  # Redis stalls: connections open, nothing answers
        try:
            failed = await a.call(
                "mesh/set-my-connection-metadata", {"metadata": {"during": "outage"}}, timeout=15
            )
            assert failed["code"] == "EUNAVAILABLE" and failed["name"] == "StorageError"
            assert await a.call("echo", "still up") == "still up"  # the gateway serves on
            # Reads are served from the owner's memory, which kept the change.
            assert await a.call("mesh/get-my-connection-metadata") == {"metadata": {"during": "outage"}}
        finally:
            os.kill(pid, signal.SIGCONT)
        merged = await a.call(
            "mesh/set-my-connection-metadata",
            {"metadata": {"after": 1}, "options": {"strategy": "merge"}},
            timeout=15,
        )
        assert merged == {"success": True}
        client = aioredis.Redis.from_url(private_redis.url)
        try:
            stored = await client.hget(f"{server.settings.key_prefix}connection-meta", a.connection_id)
            members = await client.smembers(f"{server.settings.key_prefix}room:{room}")
        finally:
            await client.aclose()
        assert orjson.loads(stored) == {"during": "outage", "after": 1}  # the queued write landed
        assert members == {a.connection_id.encode()}
    await server.close()  # while its private Redis still runs
