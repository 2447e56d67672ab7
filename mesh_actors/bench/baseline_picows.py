"""The baseline server's transport on ``picows`` (see :mod:`mesh_actors.bench.baseline`).

picows is callback based (a ``WSListener`` per connection, one ``on_ws_frame`` call per frame) and
its server takes a *synchronous* listener factory; docs/gateway-library.md explains why that keeps
it out of the gateway. No compression, no protocol pings, loopback only. Needs the ``[bench]`` extra.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from importlib.metadata import version

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from .baseline import HOST, MAX_MESSAGE_BYTES, Rooms, assign_id_frames


class BaselineListener(WSListener):
    """One connection: identity pushes on connect, then the baseline's answer per text message.

    picows delivers raw frames, so a fragmented message is reassembled here; the generator never
    fragments, but a baseline that silently dropped valid input would not be a fair one.
    """

    def __init__(self, rooms: Rooms[WSTransport]) -> None:
        super().__init__()
        self._rooms = rooms
        self._id = str(uuid.uuid4())
        self._fragments: list[bytes] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Send the two identity pushes a Mesh server sends first (one per client dialect)."""
        for frame in assign_id_frames(self._id):
            transport.send(WSMsgType.TEXT, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Leave every room."""
        self._rooms.leave_all(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Answer text (or binary, like the gateway) messages; complete the closing handshake."""
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            if frame.fin:
                # The memoryview points into picows' read buffer: parse it now, before returning.
                self._reply(transport, frame.get_payload_as_memoryview())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
        elif msg_type is WSMsgType.CONTINUATION and self._fragments is not None:
            self._fragments.append(frame.get_payload_as_bytes())
            if sum(map(len, self._fragments)) > MAX_MESSAGE_BYTES:
                transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
                transport.disconnect()
            elif frame.fin:
                message, self._fragments = b"".join(self._fragments), None
                self._reply(transport, message)
        # PING is answered by picows itself (enable_auto_pong); PONG needs nothing.

    def _reply(self, transport: WSTransport, message: bytes | memoryview) -> None:
        outcome = self._rooms.handle(transport, self._id, message)
        for member in outcome.fanout:
            member.send(WSMsgType.TEXT, outcome.frame)
        if outcome.reply is not None:
            transport.send(WSMsgType.TEXT, outcome.reply)


async def serve_picows(port: int, ready: Callable[[str, int], None], stop: asyncio.Event) -> None:
    """The baseline on ``picows`` until ``stop`` is set."""
    rooms: Rooms[WSTransport] = Rooms()

    def factory(request: WSUpgradeRequest) -> BaselineListener:
        # picows calls this synchronously before answering the handshake: accept every upgrade.
        return BaselineListener(rooms)

    server = await ws_create_server(factory, HOST, port, max_frame_size=MAX_MESSAGE_BYTES)
    ready(f"picows {version('picows')}", server.sockets[0].getsockname()[1])
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
