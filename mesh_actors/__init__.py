"""mesh-actors: the Mesh realtime WebSocket framework on an actor design (inline or Ray)."""

from __future__ import annotations

from .protocol.errors import CodeError
from .server import AuthenticationError, Context, MeshServer, MeshSettings, UpgradeRequest

__all__ = ["AuthenticationError", "CodeError", "Context", "MeshServer", "MeshSettings", "UpgradeRequest"]

__version__ = "0.1.0"
