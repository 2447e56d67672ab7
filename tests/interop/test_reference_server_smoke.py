"""Smoke test of the Node interop harness against the original ``@prsm/realtime`` 1.8.1 server.

It runs ``js/client_scenario.mjs`` (two stock ``RealtimeClient`` instances) against
``js/reference_server.mjs`` (the stock ``RealtimeServer``), so it documents that the scenario and its
expectations are right for the original implementation. The same scenario is then pointed at our
Python server elsewhere.

Redis: the test Redis (``MESH_REDIS_URL`` or the embedded one). The reference server keeps all its
keys under ``rt:``; this test deletes only those, before and after the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from .expectations import assert_client_scenario
from .nodejs import run_client_scenario, start_reference_server

pytestmark = pytest.mark.interop


def _delete_reference_keys(url: str) -> None:
    """Delete the reference server's ``rt:*`` keys (and nothing else) from the test database."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="rt:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def reference_server_url(node_modules: None, redis_url: str) -> Iterator[str]:
    """WebSocket URL of a freshly started reference server on the test Redis."""
    _delete_reference_keys(redis_url)
    try:
        with start_reference_server(redis_url) as (_process, port):
            yield f"ws://127.0.0.1:{port}"
    finally:
        _delete_reference_keys(redis_url)


def test_client_scenario_against_reference_server(reference_server_url: str) -> None:
    assert_client_scenario(run_client_scenario(reference_server_url))
