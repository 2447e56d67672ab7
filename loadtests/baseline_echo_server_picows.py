"""A minimal Mesh-protocol echo server on ``picows``: the candidate library's ceiling for echo.

``loadtests/echo_baseline.py --target baseline-picows`` runs it next to the ``websockets`` baseline
(:mod:`baseline_echo_server`) so the two WebSocket libraries are compared on the same protocol, the
same machine and the same load: two ``assign-id`` pushes on connect, then every
``{"id", "command", "payload"}`` answered with the same three keys; nothing else.

picows is callback based (a ``WSListener`` per connection, one ``on_ws_frame`` call per frame) and
its server takes a *synchronous* listener factory, see ``docs/gateway-library.md`` for what that
means for the gateway. No compression, no protocol pings, loopback only, uvloop when installed.

Run it alone with ``python loadtests/baseline_echo_server_picows.py --port 8766``; it prints
``baseline-echo (picows X) listening on ws://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from importlib.metadata import version
from typing import Any

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

HOST = "127.0.0.1"
"""Loopback only: this is a benchmark fixture, never a public server."""

MAX_MESSAGE_BYTES = 1 << 20
"""Same inbound limit as the gateway's default ``max_frame_bytes`` (per frame and per message)."""


def _answer(message: bytes | memoryview) -> bytes | None:
    """The echo response to one inbound message, or None for input without an ``id`` (ignored)."""
    try:
        frame: Any = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if type(frame) is not dict or "id" not in frame:
        return None
    return orjson.dumps({"id": frame["id"], "command": frame.get("command"), "payload": frame.get("payload")})


class EchoListener(WSListener):
    """One connection: identity pushes on connect, then an answer per complete text message.

    picows delivers raw frames, so a fragmented message is reassembled here; the load client never
    fragments, but a baseline that silently dropped valid input would not be a fair one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fragments: list[bytes] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Send the two identity pushes a Mesh server sends first (one per client dialect)."""
        connection_id = str(uuid.uuid4())
        for prefix in ("mesh", "rt"):
            transport.send(
                WSMsgType.TEXT, orjson.dumps({"command": f"{prefix}/assign-id", "payload": connection_id})
            )

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

    @staticmethod
    def _reply(transport: WSTransport, message: bytes | memoryview) -> None:
        reply = _answer(message)
        if reply is not None:
            transport.send(WSMsgType.TEXT, reply)


def _listener_factory(request: WSUpgradeRequest) -> EchoListener:
    """Accept every upgrade (picows calls this synchronously, before answering the handshake)."""
    return EchoListener()


async def _main(port: int) -> None:
    """Listen on ``HOST:port`` until SIGINT or SIGTERM, announcing readiness on stdout."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await ws_create_server(_listener_factory, HOST, port, max_frame_size=MAX_MESSAGE_BYTES)
    bound = server.sockets[0].getsockname()[1]
    print(f"baseline-echo (picows {version('picows')}) listening on ws://{HOST}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--port`` and serve on uvloop when it is installed (as the gateway does)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.port))
    else:
        uvloop.run(_main(args.port))


if __name__ == "__main__":
    main()
