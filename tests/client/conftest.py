"""Fixtures of the client tests: a wire peer and a factory of clients closed at teardown. The
original ``@prsm/realtime`` server (``reference_server_url``) comes from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh_actors.client import MeshClient

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
