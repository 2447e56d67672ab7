"""What built-in commands see of the server: the API parts of every feature, and the policy."""

from __future__ import annotations

from typing import Any, Protocol

from ..settings import MeshSettings
from .base import Client
from .connections.api import ConnectionManager
from .rooms.api import RoomManager

__all__ = ["CommandContext", "Services"]


class Services(Protocol):
    """The part of the server API built-in commands use."""

    @property
    def settings(self) -> MeshSettings: ...

    @property
    def connection_manager(self) -> ConnectionManager: ...

    @property
    def room_manager(self) -> RoomManager: ...

    async def may_use_room(self, connection: Client, room: str) -> bool: ...

    async def may_read_metadata(self, reader_id: str, target_id: str) -> bool: ...


class CommandContext(Protocol):
    """One command invocation as a built-in handler sees it."""

    @property
    def server(self) -> Services: ...

    @property
    def connection(self) -> Client: ...

    @property
    def command(self) -> str: ...

    @property
    def payload(self) -> Any: ...
