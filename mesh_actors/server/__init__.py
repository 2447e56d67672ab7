"""The user-facing server API."""

from __future__ import annotations

from .auth import AuthenticationError, UpgradeRequest
from .context import Context
from .mesh_server import MeshServer
from .settings import MeshSettings

__all__ = ["AuthenticationError", "Context", "MeshServer", "MeshSettings", "UpgradeRequest"]
