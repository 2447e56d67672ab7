"""Interop fixtures: Node.js is required in CI (``MESH_REQUIRE_NODE=1``), optional elsewhere."""

from __future__ import annotations

import os

import pytest

from .nodejs import ensure_node_modules, node_available


@pytest.fixture(scope="session")
def node_modules() -> None:
    """Install the pinned npm packages once; skip (or fail in CI) without a usable Node.js."""
    reason = node_available()
    if reason is not None:
        if os.environ.get("MESH_REQUIRE_NODE") == "1":
            pytest.fail(f"MESH_REQUIRE_NODE=1 but {reason}")
        pytest.skip(f"interop tests need Node.js >= 20 and npm: {reason}")
    ensure_node_modules()
