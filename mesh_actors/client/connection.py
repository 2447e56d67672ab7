"""One WebSocket connection, from the opening handshake to its close.

This layer knows nothing about commands, reconnects or dialects: it opens a socket (mapping
handshake failures to :class:`MeshConnectionError`), runs a read loop that hands each message to
the client, sends text frames, and reports once, synchronously, that the socket is gone.
:class:`~mesh_actors.client.MeshClient` decides what all of that means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .errors import MeshConnectionError

__all__ = ["Connection"]

logger = logging.getLogger("mesh_actors.client")

MessageHandler = Callable[["Connection", str | bytes], Awaitable[None]]
CloseHandler = Callable[["Connection"], None]


class Connection:
    """An open WebSocket to a Mesh server. Create it with :meth:`open`."""

    def __init__(self, ws: ClientConnection, on_message: MessageHandler, on_close: CloseHandler) -> None:
        self._ws = ws
        self._on_message = on_message
        self._on_close = on_close
        self.closed = False
        """Set, together with the close callback, when the read loop ends."""
        self._reader = asyncio.create_task(self._read(), name="mesh-client-reader")

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        on_message: MessageHandler,
        on_close: CloseHandler,
        headers: Mapping[str, str] | None = None,
        close_timeout: float | None = None,
        max_message_size: int | None = None,
    ) -> Connection:
        """Open a WebSocket to ``url`` and start reading.

        Raises :class:`MeshConnectionError` (with ``status`` for a rejected upgrade) if the
        connection cannot be established. There is no timeout here; the caller bounds the whole
        attempt, ``assign-id`` included.
        """
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                open_timeout=None,
                # Liveness is the protocol's own ping/pong plus our watchdog
                # (docs/protocol.md#heartbeat); a second, WebSocket-level keepalive with other
                # timeouts would only add surprise closes.
                ping_interval=None,
                close_timeout=close_timeout,
                max_size=max_message_size,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise MeshConnectionError(
                f"The server rejected the WebSocket upgrade: HTTP {status} {exc.response.reason_phrase}",
                status=status,
            ) from exc
        except (OSError, WebSocketException, EOFError) as exc:
            raise MeshConnectionError(f"WebSocket connection error: {exc}") from exc
        except Exception as exc:  # e.g. a header value websockets refuses: still a failed connect
            raise MeshConnectionError(f"WebSocket connection error: {exc!r}") from exc
        return cls(ws, on_message, on_close)

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code, once the connection is closed."""
        return self._ws.close_code

    async def send(self, frame: bytes) -> None:
        """Send one UTF-8 JSON frame as a text message.

        Raises :class:`MeshConnectionError` if the connection is closed; the frame was then not
        sent.
        """
        try:
            await self._ws.send(frame, text=True)
        except ConnectionClosed as exc:
            raise MeshConnectionError("The connection is closed.") from exc

    async def close(self) -> None:
        """Close the connection with the closing handshake and wait for the read loop to end."""
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake.

        For a peer that stopped answering: the handshake would only wait for ``close_timeout``.
        """
        self._ws.transport.abort()

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                try:
                    await self._on_message(self, message)
                except Exception:
                    logger.exception("Error while handling a message from the server")
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("WebSocket read loop failed")
            self.abort()
        finally:
            self.closed = True
            self._on_close(self)
