"""The client's connection status (docs/protocol.md#client-status)."""

from __future__ import annotations

import enum

__all__ = ["ClientStatus"]


class ClientStatus(enum.IntEnum):
    """Where the client is in its connection life cycle; numbers match the reference ``Status``."""

    OFFLINE = 0
    """Not connected and not trying to: never connected, closed, or gave up reconnecting."""

    RECONNECTING = 1
    """The connection was lost; reconnect attempts are running. Commands go to the offline queue."""

    CONNECTING = 2
    """:meth:`~mesh_actors.client.MeshClient.connect` is running. Commands go to the offline queue."""

    ONLINE = 3
    """The server assigned a connection id; commands are sent immediately."""
