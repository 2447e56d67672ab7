"""One client connection as the gateway holds it, and the handle user code sees.

See docs/protocol.md#connection-handle.

Sends write complete WebSocket frames straight to the socket's transport: a frame built once for a
broadcast is written unchanged to every recipient. The outbound buffer of each socket is bounded;
a client that does not read is closed as a slow consumer rather than growing memory without limit.

Output backpressure: answers wait in a per-tick list (one write per tick) only up to
``_FLUSH_BYTES``; past that they are written at once. A connection whose pending output (those
queued answers plus the transport's buffer) is past :attr:`Connection.output_limit`, half of
``max_send_buffer_bytes``, gets no new command started until it drains (see ``Gateway``). So what
one connection makes the server hold is about ``max_send_buffer_bytes`` plus its largest answer,
whatever it sends, and a client that keeps not reading passes the limit and is dropped (or times out).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from ..app import Api
from ..app.auth import UpgradeRequest
from ..protocol.dialect import Dialect
from ..protocol.heartbeat import HeartbeatState
from ..protocol.messages import CommandRequest, encode_push
from ..protocol.websocket import text_frame
from .close_codes import SLOW_CONSUMER

__all__ = ["Connection"]

logger = logging.getLogger(__name__)

_FLUSH_BYTES = 64 * 1024
"""Answers queued for the end of the tick are written at once when their bytes pass this."""


class Connection:
    """A live client connection on this gateway."""

    def __init__(
        self,
        connection_id: str,
        websocket: ServerConnection,
        *,
        gateway_id: str,
        api: Api,
        request: UpgradeRequest,
        auth: Any,
        max_send_buffer_bytes: int,
        max_missed_pongs: int,
        close_timeout: float = 2.0,
    ) -> None:
        self.id = connection_id
        """Opaque, unguessable connection id (a UUID)."""
        self.gateway_id = gateway_id
        """Id of the gateway holding the socket (the reference's instance id)."""
        self.request = request
        """The upgrade request (path, query, headers)."""
        self.auth = auth
        """What ``authenticate_connection`` returned: server-only, clients cannot change it."""
        self.dialect: Dialect | None = None
        """Latched from the first prefixed command (docs/protocol.md#dialects); ``None`` until then."""
        self.heartbeat = HeartbeatState(max_missed_pongs=max_missed_pongs)
        self.api = api
        """The server API (for :meth:`get_metadata` and :meth:`set_metadata`)."""
        self.tasks: set[asyncio.Task[None]] = set()
        """Commands of this connection that are waiting on something (see ``gateway.eager``)."""
        self.waiting: deque[CommandRequest] = deque()
        """Commands received beyond ``max_inflight_commands``, started as running ones finish."""
        self._answers: list[bytes] | None = None
        """Frames queued by :meth:`answer` for the end of this event-loop tick, or None."""
        self._answer_bytes = 0
        """Bytes in :attr:`_answers`; never more than ``_flush_bytes`` after an append returns."""
        self._websocket = websocket
        self._transport: asyncio.WriteTransport = websocket.transport
        self._protocol = websocket.protocol
        self._max_buffer = max_send_buffer_bytes
        self.output_limit = max(max_send_buffer_bytes // 2, 2)
        """Pending output (answers queued for this tick + the transport's buffer) past which the
        gateway starts no more commands of this connection until the transport has drained."""
        self._flush_bytes = min(_FLUSH_BYTES, self.output_limit // 2)
        # The gateway waits for resume_writing(), which only follows a pause_writing(): the
        # transport must pause before the output limit is reached (only small limits need this;
        # websockets sets a high-water mark of 32 KiB).
        _low, high = self._transport.get_write_buffer_limits()
        if high > self.output_limit // 2 and not self._transport.is_closing():
            self._transport.set_write_buffer_limits(high=self.output_limit // 2)
        self._closing = False
        self._close_timeout = close_timeout

    @property
    def websocket(self) -> ServerConnection:
        """The websockets connection underneath (a ``FastPathConnection`` in the gateway)."""
        return self._websocket

    @property
    def remote_address(self) -> Any:
        """``(host, port)`` of the client."""
        return self.request.remote_address

    @property
    def is_dead(self) -> bool:
        """True once the socket is no longer open."""
        return self._closing or self._protocol.state is not State.OPEN

    @property
    def output_full(self) -> bool:
        """True while the pending output is past :attr:`output_limit` (the transport is then
        paused: while it is not, the output is at most its high-water mark + ``_flush_bytes``)."""
        return self._answer_bytes + self._transport.get_write_buffer_size() > self.output_limit

    @property
    def latency_ms(self) -> float:
        """The last measured round trip in milliseconds."""
        return self.heartbeat.latency_ms

    def send_frame(self, frame: bytes) -> bool:
        """Write a complete WebSocket frame; False if the socket is closed or overflowing."""
        if self._closing or self._protocol.state is not State.OPEN:
            return False
        answers = self._answers
        if answers is not None:
            answers.append(frame)  # behind the answers of this tick: keep the order
            self._answer_bytes += len(frame)
            if self._answer_bytes > self._flush_bytes:
                return self._write_answers()
            return True
        # The same as _write, inlined: this runs once per recipient of every broadcast.
        transport = self._transport
        if transport.get_write_buffer_size() > self._max_buffer:
            self.abort(SLOW_CONSUMER, "send queue full")
            return False
        transport.write(frame)
        return True

    def answer(self, message: bytes) -> None:
        """Send a command's response (an encoded message) at the end of this event-loop tick.

        Commands run as soon as their frame is parsed; writing each answer at once made the
        client's reads (and so its next requests) smaller, which cost more CPU per op on both
        sides than it saved. Answers of one tick leave in one write, in order with other frames,
        unless they pass ``_FLUSH_BYTES``: then those queued so far are written at once.
        """
        frame = text_frame(message)
        answers = self._answers
        if answers is not None:
            answers.append(frame)
            size = self._answer_bytes + len(frame)
            self._answer_bytes = size
            if size > self._flush_bytes:
                self._write_answers()
            return
        self._answers = [frame]
        self._answer_bytes = len(frame)
        asyncio.get_running_loop().call_soon(self._flush_answers)
        if len(frame) > self._flush_bytes:
            self._write_answers()

    def _write_answers(self) -> bool:
        """Write the frames queued so far now; later ones of this tick queue again (the flush at
        the end of the tick is still scheduled)."""
        frames = self._answers or []
        self._answers = []
        self._answer_bytes = 0
        return self._write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _flush_answers(self) -> None:
        frames, self._answers = self._answers or [], None
        self._answer_bytes = 0
        if frames:
            self._write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _write(self, data: bytes) -> bool:
        """Write to the transport now, unless the socket is closed or overflowing."""
        if self._closing or self._protocol.state is not State.OPEN:
            return False
        transport = self._transport
        if transport.get_write_buffer_size() > self._max_buffer:
            self.abort(SLOW_CONSUMER, "send queue full")
            return False
        transport.write(data)
        return True

    def send_json(self, message: bytes) -> bool:
        """Write one encoded Mesh message (JSON bytes)."""
        return self.send_frame(text_frame(message))

    def send(self, command: str, payload: Any = None) -> bool:
        """Push ``{"command", "payload"}`` to this client; False if it could not be sent."""
        return self.send_json(encode_push(command, payload))

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Start closing the socket without waiting."""
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        task.add_done_callback(_log_close_failure)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a closing handshake, bounded by ``close_timeout``; then drop the TCP link.

        websockets waits for its send buffer to drain before the handshake can finish, which never
        happens for a client that stopped reading: hence the outer bound.
        """
        self._closing = True
        self._hold_commands()
        try:
            await asyncio.wait_for(self._websocket.close(code, reason), self._close_timeout + 0.5)
        except TimeoutError:
            self._transport.abort()

    def abort(self, code: int, reason: str) -> None:
        """Drop the TCP connection at once: the send buffer is full, a close frame could not pass.

        The client sees an abnormal closure (1006) and reconnects; ``code`` is logged only.
        """
        if self._transport.is_closing():
            return
        self._closing = True
        self._hold_commands()
        logger.info("dropping connection %s: %s (%s)", self.id, reason, code)
        self._transport.abort()

    def _hold_commands(self) -> None:
        # The gateway starts no more commands of a closing connection; it checks one flag of the
        # socket per command (FastPathConnection.hold), then this connection's state.
        self._websocket.hold = True  # type: ignore[attr-defined]

    async def get_metadata(self) -> Any:
        """This connection's metadata."""
        return await self.api.connection_manager.get_metadata(self.id)

    async def set_metadata(self, value: Any, strategy: str = "replace") -> Any:
        """Set this connection's metadata; returns the stored value."""
        return await self.api.connection_manager.set_metadata(self.id, value, strategy)

    def __repr__(self) -> str:
        return f"<Connection {self.id} dead={self.is_dead}>"


def _log_close_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("closing a socket failed", exc_info=task.exception())
