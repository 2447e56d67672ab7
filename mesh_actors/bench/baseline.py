"""The baseline: the bench app's wire protocol on a bare WebSocket library, no framework.

Why: each mesh-actors figure is reported as a ratio to what the WebSocket library itself allows on
the same machine in the same run. This server speaks just enough of the Mesh wire protocol for the
generator and does nothing else (no Redis, no registry, no middleware, no heartbeats):

* on connect, the two ``assign-id`` pushes (``mesh/`` and ``rt/`` dialects);
* ``mesh/join-room`` / ``rt/join-room {roomName}``: join, answer ``{success: true, present: [...]}``;
* ``publish {roomName, payload}``: send ``{"command": "room-message", "payload": payload}`` to every
  member, then answer ``true``;
* any other ``{id, command, payload}``: answered with the same three keys (echo).

Two transports share that logic (:class:`Rooms`): ``websockets`` (the gateway's library, same
settings: asyncio API, uvloop, no compression, no protocol pings; fan-out with its ``broadcast()``
helper, which frames once and writes to each socket) and ``picows``
(:mod:`mesh_actors.bench.baseline_picows`, the faster candidate measured in docs/gateway-library.md).

Run it alone: ``python -m mesh_actors.bench.baseline --library websockets --port 8765``; it prints
``baseline (websockets X) listening on ws://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Generic, TypeVar

import orjson

HOST = "127.0.0.1"
"""Loopback only: this is a benchmark fixture, never a public server."""

MAX_MESSAGE_BYTES = 1 << 20
"""Same inbound limit as the gateway's default ``max_frame_bytes``."""

JOIN_COMMANDS = frozenset({"mesh/join-room", "rt/join-room"})

C = TypeVar("C")
"""A connection of the transport (a websockets connection or a picows transport)."""


def assign_id_frames(connection_id: str) -> list[bytes]:
    """The two identity pushes a Mesh server sends first (one per client dialect)."""
    return [
        orjson.dumps({"command": f"{prefix}/assign-id", "payload": connection_id})
        for prefix in ("mesh", "rt")
    ]


@dataclass
class Outcome(Generic[C]):
    """What to do about one inbound message: fan ``frame`` out to ``fanout`` first, then ``reply``."""

    reply: bytes | None
    fanout: Collection[C] = ()
    frame: bytes = b""


class Rooms(Generic[C]):
    """The whole protocol of the baseline: room membership and the answer to each message."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[C, str]] = {}
        """room -> {connection: connection id}"""

    def handle(self, connection: C, connection_id: str, message: bytes | str | memoryview) -> Outcome[C]:
        """Answer one message of ``connection``; input without an ``id`` is ignored (``pong``...)."""
        try:
            request: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Outcome(None)
        if type(request) is not dict or "id" not in request:
            return Outcome(None)
        command = request.get("command")
        payload: Any = request.get("payload")  # any JSON value: a dict wherever ``room`` below is a str
        room = payload.get("roomName") if type(payload) is dict else None
        if command == "publish" and isinstance(room, str):
            members = self._rooms.get(room, {})
            frame = orjson.dumps({"command": "room-message", "payload": payload.get("payload")})
            return Outcome(self._reply(request, True), members.keys(), frame)
        if command in JOIN_COMMANDS and isinstance(room, str):
            members = self._rooms.setdefault(room, {})
            members[connection] = connection_id
            return Outcome(self._reply(request, {"success": True, "present": list(members.values())}))
        return Outcome(self._reply(request, payload))

    def leave_all(self, connection: C) -> None:
        """Forget a closed connection in every room."""
        for room in [name for name, members in self._rooms.items() if members.pop(connection, None)]:
            if not self._rooms[room]:
                del self._rooms[room]

    @staticmethod
    def _reply(request: dict[str, Any], payload: Any) -> bytes:
        return orjson.dumps({"id": request["id"], "command": request.get("command"), "payload": payload})


async def serve_websockets(port: int, ready: Callable[[str, int], None], stop: asyncio.Event) -> None:
    """The baseline on ``websockets`` until ``stop`` is set."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    rooms: Rooms[ServerConnection] = Rooms()

    async def handle(websocket: ServerConnection) -> None:
        connection_id = str(uuid.uuid4())
        try:
            for frame in assign_id_frames(connection_id):
                # ``text=True`` sends the UTF-8 bytes as a text frame without a decode/encode round trip.
                await websocket.send(frame, text=True)
            async for message in websocket:
                outcome = rooms.handle(websocket, connection_id, message)
                if outcome.fanout:
                    broadcast(outcome.fanout, outcome.frame, text=True)
                if outcome.reply is not None:
                    await websocket.send(outcome.reply, text=True)
        except ConnectionClosed:
            pass
        finally:
            rooms.leave_all(websocket)

    async with serve(
        handle,
        HOST,
        port,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=None,
        server_header=None,
    ) as server:
        ready(f"websockets {version('websockets')}", next(iter(server.sockets)).getsockname()[1])
        await stop.wait()


async def _main(library: str, port: int) -> None:
    """Listen on ``HOST:port`` until SIGINT or SIGTERM, announcing readiness on stdout."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(what: str, bound: int) -> None:
        print(f"baseline ({what}) listening on ws://{HOST}:{bound}", flush=True)

    serve: Callable[[int, Callable[[str, int], None], asyncio.Event], Coroutine[Any, Any, None]]
    if library == "picows":
        from .baseline_picows import serve_picows as serve
    else:
        serve = serve_websockets
    await serve(port, ready, stop)


def main(argv: list[str] | None = None) -> None:
    """Parse ``--library`` and ``--port``; serve on uvloop when it is installed (as the gateway does)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=("websockets", "picows"), default="websockets")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.library, args.port))
    else:
        uvloop.run(_main(args.library, args.port))


if __name__ == "__main__":
    main()
