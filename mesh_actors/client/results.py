"""Shapes of the values returned by the built-in command helpers.

See docs/protocol.md#built-in-commands, docs/protocol.md#client-life-cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

__all__ = ["JoinRoomResult", "PresenceCallback", "PresentMember"]


class PresentMember(TypedDict):
    """A member of a room as listed by ``join-room``: its connection id and metadata."""

    id: str
    metadata: Any


class JoinRoomResult(TypedDict):
    """What :meth:`~mesh_actors.client.MeshClient.join_room` returns."""

    success: bool
    present: list[PresentMember]


PresenceCallback = Callable[[Any], Any]
"""Called with each presence update of a room (sync or async)."""
