"""The load generator's WebSocket clients, and the counters every delivery lands in.

Why a hand-written client: the generator must cost less than the server it measures, or it becomes
the limit. The default ``raw`` client (an asyncio protocol that parses the server's unmasked frames
itself) costs about half the generator CPU per received message of the ``websockets`` client; see
docs/performance.md, "The generator". ``websockets`` and ``picows`` (the ``[bench]`` extra) are kept
as ``--client`` options to measure against it. All three share :class:`Client`: its
:meth:`Client.on_text` is the per-message hot path (count, order check, latency from the payload's
send timestamp), and :meth:`Client.command` sends a command whose future resolves to the answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .servers import HOST

picows: Any
try:
    import picows
except ImportError:  # optional (the [bench] extra); the harness refuses --client picows without it
    picows = None

CLIENT_KINDS = ("raw", "websockets", "picows")
"""``--client`` choices; ``raw`` is the default (the cheapest, see the module docstring)."""

CLOSE_TIMEOUT_S = 3.0
MAX_FRAME_BYTES = 64 << 20
"""Frames the clients accept (a join answer lists every member: ~40 bytes each)."""

_PONG = orjson.dumps({"command": "pong", "payload": {}})
_CLOSE_NORMAL = (1000).to_bytes(2, "big")
_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


@dataclass
class Hub:
    """Counters shared by every client of the generator (one event loop: plain attributes suffice)."""

    run: int = 0
    """Id of the current run; ``room-message`` frames of another run are counted as ``stale``."""
    measuring: bool = False
    """True inside the measured window."""
    received: int = 0
    """``room-message`` frames of the current run, whenever they arrived."""
    window: int = 0
    """... of which inside the window."""
    stale: int = 0
    disorder: int = 0
    garbled: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    """Delivery latencies (ns) of the frames received inside the window."""
    clients: list[Client] = field(default_factory=list)
    expected: int = -1
    """Deliveries the current run must reach (set by :meth:`expect`; -1 until then)."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when ``received`` reaches ``expected``: the run's drain waits on it, not on a poll."""

    def start_run(self) -> None:
        """Forget the previous run: a new id, zero counters, sequence tracking reset per client."""
        self.run += 1
        self.measuring = False
        self.received = self.window = self.stale = self.disorder = self.garbled = 0
        self.latencies = array("q")
        self.expected = -1
        self.drained = asyncio.Event()
        for client in self.clients:
            client.last_seq = 0

    def expect(self, deliveries: int) -> None:
        """The publisher is done: ``drained`` is set once ``deliveries`` have been received."""
        self.expected = deliveries
        if self.received >= deliveries:
            self.drained.set()


class Client:
    """What both client implementations share: the handling of every text frame the server sends.

    ``room-message`` is the hot path (one call per delivery), so it is handled first and inline.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.last_seq = 0
        self.received = 0
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        """Resolved when the connection is gone."""

    def on_text(self, data: bytes | memoryview, now: int) -> None:
        """One text frame from the server, received at ``now`` (perf_counter_ns)."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.hub.garbled += 1
            return
        if type(message) is not dict:
            self.hub.garbled += 1
            return
        command = message.get("command")
        if command == "room-message":
            body = message["payload"]
            hub = self.hub
            if body["r"] != hub.run:
                hub.stale += 1
                return
            seq = body["s"]
            if seq <= self.last_seq:
                hub.disorder += 1
            self.last_seq = seq
            self.received += 1
            hub.received += 1
            if hub.measuring:
                hub.window += 1
                hub.latencies.append(now - body["t"])
            elif hub.received == hub.expected:
                hub.drained.set()
        elif "id" in message:
            future = self._pending.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message.get("payload"))
        elif command == "ping":
            self.send(_PONG)

    def command(self, name: str, payload: Any) -> asyncio.Future[Any]:
        """Send a command; the future resolves to the response payload."""
        self._next_id += 1
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[self._next_id] = future
        self.send(orjson.dumps({"id": self._next_id, "command": name, "payload": payload}))
        return future

    def send(self, data: bytes) -> None:
        """Send one text frame (fire and forget)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection (closing handshake, bounded)."""
        raise NotImplementedError

    def _gone(self, reason: str) -> None:
        """The connection is lost: fail what waits for an answer."""
        if not self.closed.done():
            self.closed.set_result(None)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))


def client_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 section 5.3: clients mask what they send)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(length, "big")
    return header + key + masked


class RawClient(Client, asyncio.Protocol):
    """A minimal WebSocket client on an asyncio protocol: the cheapest way to read many sockets.

    It sends the upgrade request without extensions (no compression), checks for ``101``, then
    parses unmasked server frames straight from ``data_received``. The server never fragments
    messages, so continuation frames are not supported (they would be counted as garbled).
    """

    def __init__(self, hub: Hub, host: str, port: int) -> None:
        super().__init__(hub)
        key = base64.b64encode(os.urandom(16)).decode()
        self._request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._upgraded = False
        self.opened: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        self._gone(f"connection lost: {exc!r}")

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._rest:
            data, self._rest = self._rest + data, b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._rest = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                status = data[: data.find(b"\r\n")].decode(errors="replace")
                self.opened.set_exception(ConnectionError(f"upgrade refused: {status}"))
                assert self._transport is not None
                self._transport.close()
                return
            self._upgraded = True
            self.opened.set_result(None)
            data = data[end + 4 :]
        size = len(data)
        pos = 0
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            if opcode == _OP_TEXT:
                self.on_text(data[start:end], now)
            elif opcode == _OP_PING:
                self._write(client_frame(data[start:end], _OP_PONG))
            elif opcode != _OP_CLOSE and opcode != _OP_PONG:
                self.hub.garbled += 1
            pos = end
        if pos < size:
            self._rest = data[pos:]

    def _write(self, frame: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    def send(self, data: bytes) -> None:
        self._write(client_frame(data))

    async def close(self) -> None:
        self._write(client_frame(_CLOSE_NORMAL, _OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_TIMEOUT_S)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()


class WebsocketsClient(Client):
    """The same client on the ``websockets`` asyncio API (``--client websockets``), for comparison."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._websocket: ClientConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self, uri: str) -> None:
        """Connect and start reading."""
        self._websocket = await connect(
            uri, compression=None, ping_interval=None, proxy=None, max_size=MAX_FRAME_BYTES, open_timeout=30
        )
        self._spawn(self._read(self._websocket))

    async def _read(self, websocket: ClientConnection) -> None:
        recv, clock, on_text = websocket.recv, time.perf_counter_ns, self.on_text
        try:
            while True:
                on_text(await recv(decode=False), clock())
        except ConnectionClosed as error:
            self._gone(f"connection closed: {error}")
        finally:
            self._gone("reader stopped")

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, data: bytes) -> None:
        if self._websocket is not None:
            self._spawn(self._websocket.send(data, text=True))

    async def close(self) -> None:
        if self._websocket is not None:
            with contextlib.suppress(TimeoutError, WebSocketException, OSError):
                await asyncio.wait_for(self._websocket.close(), CLOSE_TIMEOUT_S)


class _PicowsListener(picows.WSListener if picows is not None else object):  # type: ignore[misc]
    """Forwards picows' frame callbacks to a :class:`PicowsClient` (picows wants a WSListener)."""

    def __init__(self, client: PicowsClient) -> None:
        super().__init__()
        self.client = client

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        msg_type = frame.msg_type
        if msg_type is picows.WSMsgType.TEXT:
            # A memoryview into picows' read buffer: on_text parses it before returning.
            self.client.on_text(frame.get_payload_as_memoryview(), time.perf_counter_ns())
        elif msg_type is picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        # PING is answered by picows itself (enable_auto_pong).

    def on_ws_disconnected(self, transport: Any) -> None:
        self.client._gone("disconnected")


class PicowsClient(Client):
    """The same client on ``picows`` (``--client picows``; the ``[bench]`` extra), for comparison."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._transport: Any = None

    async def open(self, uri: str) -> None:
        """Connect (picows reads in its own callbacks from then on)."""
        self._transport, _ = await picows.ws_connect(
            lambda: _PicowsListener(self), uri, max_frame_size=MAX_FRAME_BYTES, websocket_handshake_timeout=30
        )

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_disconnected:
            self._transport.send(picows.WSMsgType.TEXT, data)

    async def close(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.send_close(picows.WSCloseCode.OK)
            try:
                await asyncio.wait_for(self._transport.wait_disconnected(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                self._transport.disconnect()


async def open_client(kind: str, hub: Hub, port: int) -> Client:
    """Connect one client of implementation ``kind`` (see :data:`CLIENT_KINDS`)."""
    if kind == "raw":
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: RawClient(hub, HOST, port), HOST, port)
        await client.opened
        return client
    other: WebsocketsClient | PicowsClient = (
        WebsocketsClient(hub) if kind == "websockets" else PicowsClient(hub)
    )
    await other.open(f"ws://{HOST}:{port}/")
    return other
