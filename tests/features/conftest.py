"""Fixtures of the feature tests: the storage backend the Redis adapters are built on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh_actors.store.redis import KeyLayout, RedisBackend, connect_redis


@pytest.fixture
async def backend(redis_url: str, key_prefix: str) -> AsyncIterator[RedisBackend]:
    """A backend on the test Redis under this test's own key prefix."""
    client = connect_redis(redis_url)
    yield RedisBackend(client, KeyLayout(key_prefix))
    await client.aclose()
