"""Smoke test of the Node interop harness against the original ``@prsm/realtime`` 1.8.1 server.

It runs ``js/client_scenario.mjs`` (two stock ``RealtimeClient`` instances) against
``js/reference_server.mjs`` (the stock ``RealtimeServer``), so it documents that the scenario and its
expectations are right for the original implementation. The same scenario is then pointed at our
Python server elsewhere.

Redis: the test Redis (``MESH_REDIS_URL`` or the embedded one). The reference server keeps all its
keys under ``rt:``; this test deletes only those, before and after the run.
"""

from __future__ import annotations

import pytest

from .expectations import assert_client_scenario
from .nodejs import run_client_scenario

pytestmark = pytest.mark.interop


def test_client_scenario_against_reference_server(reference_server_url: str) -> None:
    assert_client_scenario(run_client_scenario(reference_server_url))
