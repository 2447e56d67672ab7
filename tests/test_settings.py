"""Settings from the environment: what ``MESH_*`` variables mean."""

from __future__ import annotations

import pytest

from mesh_actors.settings import MeshSettings


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_redis_url_means_the_embedded_redis(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MESH_REDIS_URL", value)
    assert MeshSettings().redis_url is None


def test_a_redis_url_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_REDIS_URL", "redis://127.0.0.1:6379/3")
    assert MeshSettings().redis_url == "redis://127.0.0.1:6379/3"
