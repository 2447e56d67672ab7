"""A websockets server connection that hands whole text messages to the gateway as they are parsed.

Why: with ``async for message in websocket``, each inbound message goes through websockets'
assembler (a queue, a future, a wake-up of the connection's handler task) before the gateway sees
it. Measured on echo with 50 clients, that machinery (``Assembler.get``, ``SimpleQueue.get``,
``recv``, the async iterator and the handler's resumption) was about a quarter of the server's CPU.
Here an unfragmented text frame is passed to the gateway's callback straight from
``data_received``, in the order the frames arrived; everything else (fragmented messages, binary
frames, control frames, the handshake) takes websockets' normal path.

Ordering: frames that arrive before the gateway is ready (the connection is being registered) are
kept in order and handed over when it attaches. Once a message arrives fragmented, every later
message of that connection takes the normal path too, so the two paths never reorder messages.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event

__all__ = ["FastPathConnection", "TextHandler"]

TextHandler = Callable[[bytes], None]
"""Called with the payload of each whole text message (not yet checked to be UTF-8)."""

_MAX_EARLY_FRAMES = 64
"""Frames kept for a connection that is not attached yet before reading pauses."""


class FastPathConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` with a direct path for text messages."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_text: TextHandler | None = None
        self._early: list[bytes] | None = []
        self._slow_path = False
        self._reading_paused = False

    def attach(self, on_text: TextHandler) -> None:
        """Start delivering text messages to ``on_text``, first those that arrived before."""
        early, self._early = self._early or [], None
        self._on_text = on_text
        for data in early:
            on_text(data)
        self.resume_reading()

    def process_event(self, event: Event) -> None:
        if type(event) is Frame and not self._slow_path:
            if event.opcode is Opcode.TEXT and event.fin:
                data = bytes(event.data)
                if self._on_text is not None:
                    self._on_text(data)
                elif self._early is not None:
                    self._early.append(data)
                    if len(self._early) >= _MAX_EARLY_FRAMES:
                        self.pause_reading()
                return
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._slow_path = True  # keep message order: the assembler has this one
        super().process_event(event)

    def pause_reading(self) -> None:
        """Stop reading from the socket (backpressure) until :meth:`resume_reading`."""
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def fail_invalid_text(self, error: UnicodeDecodeError) -> None:
        """Close with 1007 for a text message that is not UTF-8, as websockets' own path does."""
        self.protocol.fail(CloseCode.INVALID_DATA, f"{error.reason} at position {error.start}")
        self.send_data()
