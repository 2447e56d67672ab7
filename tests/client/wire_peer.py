"""A minimal WebSocket peer speaking the Mesh wire protocol, for client-MECHANICS tests only.

This is not a Mesh server and must not be used to test behaviour (rooms, metadata, presence):
those tests run against the real ``mesh_actors.server`` in ``test_client_server.py``. The peer
does exactly what the wire protocol (docs/protocol.md#wire-format) says a server does on the wire, and lets a
test
script the rest:

* sends ``assign-id`` first, in the dialects it is told (both by default, ``mesh/`` first);
* answers every frame with an ``id`` by echoing ``id`` and ``command``, running each request as
  its own task (so responses can come back out of order); ``pong``/``latency:response`` are
  recorded, never answered;
* built-in command names get canned answers just sufficient to exercise the client's helpers;
* sends ``ping`` only when asked (or every ``ping_interval``), so watchdog tests control silence;
* can refuse upgrades with an HTTP status, withhold ``assign-id``, and drop connections.

Everything it sees is recorded; tests wait for what they expect with :meth:`WirePeer.until`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from mesh_actors.protocol import command_not_found, encode_push, encode_response

__all__ = ["PeerConnection", "WirePeer"]

Handler = Callable[["PeerConnection", Any], Awaitable[Any] | Any]


@dataclass(eq=False)
class PeerConnection:
    """One accepted client socket."""

    ws: ServerConnection
    connection_id: str
    headers: Headers
    frames: list[dict[str, Any]] = field(default_factory=list)
    """Every JSON frame received on this connection, in order."""

    async def push(self, command: str, payload: Any = None) -> None:
        """Send a push frame (no id)."""
        await self.ws.send(encode_push(command, {} if payload is None else payload), text=True)

    async def send_raw(self, data: bytes | str) -> None:
        """Send an arbitrary text message."""
        await self.ws.send(data, text=True)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.ws.transport.abort()

    def requests(self, command: str | None = None) -> list[dict[str, Any]]:
        """Received frames that carry an id (optionally only those of ``command``)."""
        return [f for f in self.frames if "id" in f and (command is None or f.get("command") == command)]


class WirePeer:
    """See the module docstring. ``async with WirePeer() as peer: ... peer.url ...``"""

    def __init__(
        self,
        *,
        dialects: tuple[str, ...] = ("mesh/", "rt/"),
        ping_interval: float | None = None,
    ) -> None:
        self.dialects = dialects
        """Prefixes of the assign-id frames sent to a new connection, in order."""
        self.ping_interval = ping_interval
        self.assign = True
        """Send assign-id frames at all (False: the client never learns its id)."""
        self.reject_status: int | None = None
        """Refuse every upgrade with this HTTP status while set."""
        self.handlers: dict[str, Handler] = {"echo": lambda conn, payload: payload}
        self.gates: dict[str, asyncio.Event] = {}
        """``hold`` requests wait until ``gates[payload["gate"]]`` is set, then echo the payload."""
        self.attempts: list[float] = []
        """Loop time of every upgrade request (accepted or refused)."""
        self.connections: list[PeerConnection] = []
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handlers["hold"] = self._hold

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> WirePeer:
        self._server = await serve(
            self._serve, "127.0.0.1", 0, process_request=self._process_request, ping_interval=None
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def latest(self) -> PeerConnection:
        """The most recently accepted connection."""
        return self.connections[-1]

    def live(self) -> list[PeerConnection]:
        """Connections that are still open."""
        return [c for c in self.connections if c.ws.close_code is None and not c.ws.transport.is_closing()]

    # -- waiting ----------------------------------------------------------------------------

    async def until(self, predicate: Callable[[], Any], limit: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every frame, connection and
        attempt) and return its value; raise ``TimeoutError`` after ``limit`` seconds."""
        async with asyncio.timeout(limit), self._changed:
            return await self._changed.wait_for(predicate)

    async def next_connection(self, index: int, limit: float = 5.0) -> PeerConnection:
        """Wait for the connection number ``index`` (0-based) and return it."""
        await self.until(lambda: len(self.connections) > index, limit)
        return self.connections[index]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- protocol ---------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts.append(asyncio.get_running_loop().time())
        await self._notify()
        if self.reject_status is not None:
            return connection.respond(self.reject_status, "Rejected by the wire peer\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set once the handshake is done, before the handler runs
        peer = PeerConnection(ws, f"peer-{len(self.connections) + 1}", ws.request.headers)
        self.connections.append(peer)
        pinger = None
        try:
            if self.assign:
                for prefix in self.dialects:
                    await ws.send(encode_push(prefix + "assign-id", peer.connection_id), text=True)
            await self._notify()
            if self.ping_interval is not None:
                pinger = asyncio.create_task(self._ping_forever(peer, self.ping_interval))
            async for message in ws:
                try:
                    frame = orjson.loads(message)
                except orjson.JSONDecodeError:
                    continue
                if type(frame) is not dict:
                    continue
                peer.frames.append(frame)
                await self._notify()
                if "id" in frame and frame.get("command") not in ("pong", "latency:response"):
                    self._spawn(self._answer(peer, frame))
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()
            await self._notify()

    async def _answer(self, peer: PeerConnection, frame: dict[str, Any]) -> None:
        command = frame.get("command")
        payload = frame.get("payload")
        handler = self.handlers.get(command) if isinstance(command, str) else None
        handler = handler or _BUILTINS.get(_suffix(command))
        result: Any
        if handler is None:
            result = command_not_found(command)
        else:
            result = handler(peer, payload)
            if isinstance(result, Awaitable):
                result = await result
        with contextlib.suppress(ConnectionClosed):
            await peer.ws.send(encode_response(frame["id"], command, result), text=True)

    async def _hold(self, peer: PeerConnection, payload: Any) -> Any:
        await self.gates.setdefault(payload["gate"], asyncio.Event()).wait()
        return payload

    async def _ping_forever(self, peer: PeerConnection, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await peer.push("ping", {})

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _suffix(command: Any) -> str | None:
    if isinstance(command, str):
        for prefix in ("mesh/", "rt/"):
            if command.startswith(prefix):
                return command[len(prefix) :]
    return None


# Canned answers with the reference shapes (docs/protocol.md#built-in-commands), only so the helpers' wire
# use is visible.
_BUILTINS: dict[str | None, Handler] = {
    "join-room": lambda peer, payload: {
        "success": True,
        "present": [{"id": peer.connection_id, "metadata": None}],
    },
    "leave-room": lambda peer, payload: {"success": True},
    "get-my-connection-metadata": lambda peer, payload: {"metadata": None},
    "get-connection-metadata": lambda peer, payload: {"metadata": {"of": payload["connectionId"]}},
    "set-my-connection-metadata": lambda peer, payload: {"success": True},
    "get-room-metadata": lambda peer, payload: {"metadata": None},
}
