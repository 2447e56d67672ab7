"""The context a command handler and its middleware receive (docs/protocol.md#commands-and-middleware)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Api

__all__ = ["Context"]


class Context:
    """One command invocation: who sent what.

    Middleware may add attributes (``ctx.user = ...``) or use :attr:`state`; the handler sees them.
    """

    def __init__(self, server: Api, connection: Any, command: str, payload: Any) -> None:
        self.server = server
        """The server API (rooms, metadata, broadcasts): the ``MeshServer`` in its own process."""
        self.connection = connection
        """The calling connection (``id``, ``auth``, ``send``, ``close``)."""
        self.command = command
        """The command name exactly as received (e.g. ``mesh/join-room``)."""
        self.payload = payload
        """The request payload (any JSON value)."""
        self.state: dict[str, Any] = {}
        """Scratch space shared by the middleware chain and the handler."""

    async def get_metadata(self) -> Any:
        """The caller's connection metadata."""
        return await self.server.connection_manager.get_metadata(self.connection.id)

    async def set_metadata(self, value: Any, strategy: str = "replace") -> Any:
        """Set the caller's connection metadata; returns the stored value."""
        return await self.server.connection_manager.set_metadata(self.connection.id, value, strategy)

    def __repr__(self) -> str:
        return f"Context(command={self.command!r}, connection={self.connection.id!r})"
