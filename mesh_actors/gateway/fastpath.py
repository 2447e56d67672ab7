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

Frame parsing: once the connection is open, :meth:`FastPathConnection.data_received` splits the
byte stream into frames itself (a header read with ``struct``, unmasking with websockets' C
``apply_mask``) instead of websockets' generator-based parser, which was about 20 % of the echo
profile after the change above. It only ever consumes whole frames, so websockets' parser always
sits at a frame boundary: every frame that is not a whole, unextended, masked text frame of
acceptable size (control frames, fragments, binary, compressed, oversized or unmasked frames) is
handed to websockets byte for byte, which validates it and answers as it always does; after a
fragment, binary or compressed frame, or an oversized header, websockets parses the rest of the
connection.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

try:  # websockets ships this C helper on every platform it has wheels for
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = ["FastPathConnection", "TextHandler"]

TextHandler = Callable[[bytes], None]
"""Called with the payload of each whole text message (not yet checked to be UTF-8)."""

_MAX_EARLY_FRAMES = 64
"""Frames kept for a connection that is not attached yet before reading pauses."""

_TEXT_FIN_MASKED = (0x80 | 0x01, 0x80)
"""First byte of a whole, unextended text frame; the mask bit of the second byte."""
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class FastPathConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` with a direct path for text messages."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_text: TextHandler | None = None
        self._early: list[bytes] | None = []
        self._slow_path = False
        self._reading_paused = False
        self.writing_paused = False
        """True from the transport's ``pause_writing()`` (its buffer passed the high-water mark)
        until its ``resume_writing()`` (drained to the low-water mark)."""
        self.on_drain: Callable[[], None] | None = None
        """Called at each ``resume_writing()``: the gateway starts the commands it held back."""
        self.hold = False
        """True when a command arriving now may have to wait or be dropped: writing is paused,
        commands are queued, or the connection is closing or lost. Set by what causes it, cleared
        by the gateway once it finds nothing holds (its one check per command; see Gateway)."""
        self._own_parser: bool | None = None
        """None until the connection is open; then whether frames are split here (see module doc)."""
        self._pending = bytearray()
        """Bytes of a frame that is not complete yet (own parser only)."""
        self._needed = 0
        """Length of that frame when its header is complete (no parsing until it is all here)."""

    @property
    def splits_frames(self) -> bool:
        """True while this connection's frames are split here rather than by websockets."""
        return bool(self._own_parser)

    def attach(self, on_text: TextHandler) -> None:
        """Start delivering text messages to ``on_text``, first those that arrived before."""
        early, self._early = self._early or [], None
        self._on_text = on_text
        for data in early:
            on_text(data)
        self.resume_reading()

    def data_received(self, data: bytes) -> None:
        own = self._own_parser
        if own is None:
            if self.protocol.state is not State.OPEN:
                super().data_received(data)  # the handshake
                return
            # Take over only at a frame boundary: websockets has not been fed any frame bytes.
            own = self._own_parser = not self.protocol.reader.buffer
        if not own:
            super().data_received(data)
            return
        if self._pending:
            self._pending += data
            if len(self._pending) < self._needed:
                return  # a large frame still arriving: do not copy it again for every read
            data = bytes(self._pending)
            self._pending.clear()
        self._needed = 0
        self._split_frames(data)

    def _split_frames(self, data: bytes) -> None:
        """Handle every whole frame in ``data``; keep a trailing partial frame for later."""
        size = len(data)
        offset = 0
        max_size = self.protocol.max_message_size
        while offset < size:
            if size - offset < 2:
                break
            first, second = data[offset], data[offset + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = _U16.unpack_from(data, offset + 2)
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = _U64.unpack_from(data, offset + 2)
                header = 10
            masked = second & 0x80
            if max_size is not None and length > max_size:
                # Let websockets refuse it (1009) without buffering it first.
                self._own_parser = False
                super().data_received(data[offset:])
                return
            end = offset + header + (4 if masked else 0) + length
            if end > size:
                self._needed = end - offset
                break
            whole_text = (first, masked) == _TEXT_FIN_MASKED and not self._slow_path
            if whole_text and self.protocol.state is State.OPEN:
                mask = data[offset + header : offset + header + 4]
                self._text(apply_mask(data[offset + header + 4 : end], mask))
            else:
                opcode = first & 0x0F
                if opcode not in (Opcode.PING.value, Opcode.PONG.value, Opcode.CLOSE.value):
                    # Fragments, binary or compressed frames: websockets takes the rest, in order.
                    self._own_parser = False
                    super().data_received(data[offset:])
                    return
                super().data_received(data[offset:end])  # a whole control frame, at a boundary
            offset = end
        if offset < size:
            self._pending += data[offset:]

    def _text(self, data: bytes) -> None:
        if self._on_text is not None:
            self._on_text(data)
        elif self._early is not None:
            self._early.append(data)
            if len(self._early) >= _MAX_EARLY_FRAMES:
                self.pause_reading()

    def process_event(self, event: Event) -> None:
        if type(event) is Frame and not self._slow_path:
            if event.opcode is Opcode.TEXT and event.fin:
                self._text(bytes(event.data))
                return
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._slow_path = True  # keep message order: the assembler has this one
        super().process_event(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # websockets' assembler (the normal path's message queue) pauses and resumes reading on
        # its own; it must not resume reading while the gateway holds this socket paused.
        self.recv_messages.resume = self._resume_for_assembler

    def _resume_for_assembler(self) -> None:
        if not self._reading_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_reading(self) -> None:
        """Stop reading from the socket (backpressure) until :meth:`resume_reading`."""
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing() and not self.recv_messages.paused:
                transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hold = True
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writing_paused = True
        self.hold = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writing_paused = False
        if self.on_drain is not None:
            self.on_drain()

    def fail_invalid_text(self, error: UnicodeDecodeError) -> None:
        """Close with 1007 for a text message that is not UTF-8, as websockets' own path does."""
        self.protocol.fail(CloseCode.INVALID_DATA, f"{error.reason} at position {error.start}")
        self.send_data()
