"""A minimal Mesh-protocol echo server on ``websockets`` alone: the library's ceiling for echo.

``loadtests/echo_baseline.py --target baseline`` runs it to put the mesh-actors numbers in
proportion: it speaks just enough of the wire protocol for the load client (the two ``assign-id``
pushes on connect, then ``{"id", "command", "payload"}`` answered with the same three keys) and does
nothing else, no Redis, no registry, no middleware, no heartbeat. It uses the same WebSocket
library and settings as the gateway (asyncio API, uvloop, no compression, no protocol pings), so
the gap between the two is what the framework costs, not what the library costs.

Run it alone with ``python loadtests/baseline_echo_server.py --port 8765``; it prints
``baseline-echo (websockets X) listening on ws://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from importlib.metadata import version
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
"""Loopback only: this is a benchmark fixture, never a public server."""

MAX_MESSAGE_BYTES = 1 << 20
"""Same inbound limit as the gateway's default ``max_frame_bytes``."""


def _assign_id_frames(connection_id: str) -> list[bytes]:
    """The two identity pushes a Mesh server sends first (one per client dialect)."""
    return [
        orjson.dumps({"command": f"{prefix}/assign-id", "payload": connection_id})
        for prefix in ("mesh", "rt")
    ]


def _answer(message: str | bytes) -> bytes | None:
    """The echo response to one inbound message, or None for input without an ``id`` (ignored)."""
    try:
        frame: Any = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if type(frame) is not dict or "id" not in frame:
        return None
    return orjson.dumps({"id": frame["id"], "command": frame.get("command"), "payload": frame.get("payload")})


async def _handle(websocket: ServerConnection) -> None:
    """Serve one connection: identity pushes, then answer every request in order."""
    for frame in _assign_id_frames(str(uuid.uuid4())):
        # ``text=True`` sends the UTF-8 bytes as a text frame without a decode/encode round trip.
        await websocket.send(frame, text=True)
    try:
        async for message in websocket:
            reply = _answer(message)
            if reply is not None:
                await websocket.send(reply, text=True)
    except ConnectionClosed:
        pass


async def _main(port: int) -> None:
    """Listen on ``HOST:port`` until SIGINT or SIGTERM, announcing readiness on stdout."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        _handle,
        HOST,
        port,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=None,
        server_header=None,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(
            f"baseline-echo (websockets {version('websockets')}) listening on ws://{HOST}:{bound}",
            flush=True,
        )
        await stop.wait()


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
