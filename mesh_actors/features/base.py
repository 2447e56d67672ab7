"""What feature code sees of the running server: typed views that the app layer satisfies.

Features sit below the app (``mesh_actors.app``), which assembles them; so API parts are written
against these protocols, never against the app's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..actors.ref import Directory

__all__ = ["Client", "Deployment"]


class Client(Protocol):
    """A client connection as handlers, guards and hooks see it (the gateway's ``Connection``)."""

    @property
    def id(self) -> str: ...

    @property
    def gateway_id(self) -> str: ...

    @property
    def auth(self) -> Any: ...

    def send(self, command: str, payload: Any = None) -> bool: ...


class Deployment(Protocol):
    """Where the API parts send their calls: the directory of the running deployment."""

    @property
    def directory(self) -> Directory: ...

    def local_connections(self) -> Sequence[Any]: ...
