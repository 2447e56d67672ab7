"""The stock JS client ``RealtimeClient`` (@prsm/realtime 1.8.1, ``rt/`` dialect) against our server."""

from __future__ import annotations

import asyncio

import pytest

from mesh_actors import MeshServer
from tests.conftest import url_of

from .expectations import assert_client_scenario
from .nodejs import run_client_scenario

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("node_modules")]


async def test_stock_realtime_client_scenario_against_our_server(mesh_server: MeshServer) -> None:
    result = await asyncio.to_thread(run_client_scenario, url_of(mesh_server))
    assert_client_scenario(result)
    # The scenario's clients spoke the rt/ dialect: our server answered under the same names.
    assert mesh_server.connection_count == 0
