"""The asyncio Python client of the Mesh protocol (``mesh/`` and ``rt/`` dialects).

::

    from mesh_actors.client import MeshClient

    async with MeshClient("ws://127.0.0.1:8080") as client:
        await client.command("echo", {"hello": "world"})
"""

from __future__ import annotations

from ..protocol import Dialect, MergeStrategy
from ..protocol.backoff import Backoff
from .client import MeshClient
from .errors import MeshClientError, MeshCommandError, MeshConnectionError, MeshTimeoutError
from .options import ClientOptions
from .results import JoinRoomResult, PresenceCallback, PresentMember
from .status import ClientStatus

__all__ = [
    "Backoff",
    "ClientOptions",
    "ClientStatus",
    "Dialect",
    "JoinRoomResult",
    "MergeStrategy",
    "MeshClient",
    "MeshClientError",
    "MeshCommandError",
    "MeshConnectionError",
    "MeshTimeoutError",
    "PresenceCallback",
    "PresentMember",
]
