"""Fixtures of the client tests: a wire peer, a factory of clients closed at teardown, and the
original ``@prsm/realtime`` server (Node.js) as a second server to run behaviour tests against."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from mesh_actors.client import MeshClient

from ..interop.nodejs import node_available, start_reference_server
from .client_events import ClientFactory
from .wire_peer import WirePeer


@pytest.fixture
async def peer() -> AsyncIterator[WirePeer]:
    async with WirePeer() as peer:
        yield peer


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``make_client(url, **options)``; every client made is closed after the test."""
    clients: list[MeshClient] = []

    def factory(url: str, **options: Any) -> MeshClient:
        client = MeshClient(url, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


def _delete_reference_keys(url: str) -> None:
    """Delete the reference server's ``rt:*`` keys, and nothing else, from the test Redis."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="rt:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def reference_server_url(redis_url: str) -> Iterator[str]:
    """``ws://`` URL of the original realtime 1.8.1 server (``rt/`` dialect only), one per module.

    Needs Node.js: skipped without it, except in CI (``MESH_REQUIRE_NODE=1``) where it fails.
    """
    reason = node_available()
    if reason is not None:
        if os.environ.get("MESH_REQUIRE_NODE") == "1":
            pytest.fail(f"MESH_REQUIRE_NODE=1 but {reason}")
        pytest.skip(f"the reference server needs Node.js >= 20 and npm: {reason}")
    _delete_reference_keys(redis_url)
    try:
        with start_reference_server(redis_url) as (_process, port):
            yield f"ws://127.0.0.1:{port}"
    finally:
        _delete_reference_keys(redis_url)
