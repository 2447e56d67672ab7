"""The user's facade: :class:`MeshServer` (the app, the server API, start and serve)."""

from __future__ import annotations

from ..app import AuthenticationError, Context, UpgradeRequest
from ..settings import MeshSettings
from .mesh_server import MeshServer

__all__ = ["AuthenticationError", "Context", "MeshServer", "MeshSettings", "UpgradeRequest"]
