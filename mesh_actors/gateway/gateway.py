"""The gateway: terminates WebSockets, authenticates upgrades, runs commands, writes fan-out.

It owns its sockets and their per-connection state (heartbeat, dialect, running commands); every
other piece of state belongs to a shard and is reached over the actor links. It also answers plain
HTTP ``GET /healthz`` (alive) and ``GET /readyz`` (accepting connections) on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Collection, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..actors.cleanup import drop_connection
from ..actors.ref import Directory
from ..app import Api
from ..app.auth import UpgradeRequest, rejection_of
from ..app.calls import call_user
from ..protocol.dialect import Dialect, split_builtin
from ..protocol.heartbeat import PingAction
from ..protocol.messages import (
    CommandRequest,
    InvalidRequest,
    LatencyResponse,
    Pong,
    decode_frame,
    encode_push,
)
from ..protocol.names import ASSIGN_ID, LATENCY, LATENCY_REQUEST, PING
from ..protocol.websocket import text_frame
from .close_codes import GOING_AWAY, INTERNAL_ERROR, PING_TIMEOUT
from .connection import Connection
from .dispatch import answer_invalid, run_command
from .eager import start_eagerly
from .fastpath import FastPathConnection

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_CLEANUP_WINDOW = 15.0
"""Seconds a departed connection's clean-up keeps retrying an owner that is restarting."""
_PING_FRAME = text_frame(encode_push(PING, {}))
_LATENCY_REQUEST_FRAME = text_frame(encode_push(LATENCY_REQUEST, {}))


class Gateway:
    """One WebSocket endpoint of a deployment (one per process in the inline runtime)."""

    def __init__(self, api: Api, directory: Directory, gateway_id: str | None = None) -> None:
        self.api = api
        """The server API handlers get as ``ctx.server`` (the app is ``api.app``)."""
        self.settings = api.settings
        self.directory = directory
        self.id = gateway_id or f"gw-{uuid.uuid4()}"
        """Unique id of this gateway; connections map to it in Redis (``K:connections``)."""
        self.connections: dict[str, Connection] = {}
        """Local connections by id."""
        self.counters: dict[str, int] = {}
        """Ignored or rejected input, by reason (for metrics and tests)."""
        self._server: Server | None = None
        self._timers: list[asyncio.Task[None]] = []
        self._accepting = False
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Listen on ``host:port`` (``port`` 0 picks a free one; see :attr:`port`)."""
        settings = self.settings
        self._server = await serve(
            self._handle,
            host,
            port,
            create_connection=FastPathConnection,
            process_request=self._process_request,
            compression="deflate" if settings.compression else None,
            max_size=settings.max_frame_bytes,
            # Mesh has its own application-level ping (docs/protocol.md#heartbeat); the WebSocket one would
            # double it.
            ping_interval=None,
            close_timeout=settings.close_timeout,
            server_header=None,
            reuse_port=reuse_port,
            backlog=settings.accept_backlog,
        )
        self._accepting = True
        self._timers = [
            asyncio.create_task(self._ping_loop(), name=f"{self.id}-ping"),
            asyncio.create_task(self._latency_loop(), name=f"{self.id}-latency"),
        ]

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise RuntimeError("gateway is not started")
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        raise RuntimeError("gateway has no TCP socket")

    async def close(self) -> None:
        """Stop accepting, close every socket with 1001 "going away", and clean up."""
        self._accepting = False
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.close(close_connections=False)
        await asyncio.gather(
            *(conn.close(GOING_AWAY, "server shutting down") for conn in list(self.connections.values())),
            return_exceptions=True,
        )
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- HTTP and upgrade ------------------------------------------------------------------------

    async def _process_request(self, websocket: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        is_upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not is_upgrade:
            if path == "/healthz":
                return websocket.respond(HTTPStatus.OK, "ok\n")
            if path == "/readyz":
                if self._accepting:
                    return websocket.respond(HTTPStatus.OK, "ready\n")
                return websocket.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return None  # websockets answers 426 Upgrade Required
        if not self._accepting:
            return websocket.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down\n")
        upgrade = _upgrade_request(request, websocket.remote_address)
        websocket.mesh_upgrade = upgrade  # type: ignore[attr-defined]
        authenticate = self.api.app.authenticator
        if authenticate is None:
            return None
        try:
            auth = await call_user(authenticate, upgrade)
        except Exception as error:
            status, message = rejection_of(error)
            logger.info("upgrade rejected with %s: %r", status, error)
            return websocket.respond(status, message + "\n")
        if auth is None:
            return websocket.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        websocket.mesh_auth = auth  # type: ignore[attr-defined]
        return None

    # -- one connection --------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        assert isinstance(websocket, FastPathConnection)  # serve() makes them with create_connection
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve_connection(websocket)
        finally:
            self._handlers.discard(task)

    async def _serve_connection(self, websocket: FastPathConnection) -> None:
        settings = self.settings
        connection = Connection(
            str(uuid.uuid4()),
            websocket,
            gateway_id=self.id,
            api=self.api,
            request=getattr(websocket, "mesh_upgrade", None) or _upgrade_request(websocket.request, None),
            auth=getattr(websocket, "mesh_auth", None),
            max_send_buffer_bytes=settings.max_send_buffer_bytes,
            max_missed_pongs=settings.max_missed_pongs,
            close_timeout=settings.close_timeout,
        )
        cid = connection.id
        try:
            await self.api.connection_manager.register(cid, self.id, connection.auth)
        except Exception:
            logger.exception("could not register connection %s; closing it", cid)
            await websocket.close(INTERNAL_ERROR, "registration failed")
            return
        self.connections[cid] = connection
        try:
            # Both identity frames: each stock client ignores the other dialect's (docs/protocol.md#dialects).
            for dialect in Dialect:
                connection.send(dialect.name_of(ASSIGN_ID), cid)
            await self.api.app.run_hooks("connection", connection)
            await self._read_loop(connection, websocket)
        finally:
            del self.connections[cid]
            await self._cleanup(connection)

    async def _read_loop(self, connection: Connection, websocket: FastPathConnection) -> None:
        # Whole text messages arrive through the fast path (see .fastpath); this loop sees the
        # rest (fragmented or binary messages) and ends when the connection closes.
        websocket.attach(lambda data: self._on_message(connection, websocket, data, True))
        try:
            async for message in websocket:
                self._on_message(connection, websocket, message, False)
        except ConnectionClosed:
            pass

    def _on_message(
        self, connection: Connection, websocket: FastPathConnection, data: str | bytes, text: bool
    ) -> None:
        """Handle one inbound message: start its command, or note a heartbeat reply."""
        event = decode_frame(data)
        kind = type(event)
        if kind is CommandRequest:
            assert isinstance(event, CommandRequest)
            if connection.dialect is None:
                split = split_builtin(event.command)
                if split is not None:
                    connection.dialect = split[0]
            if websocket.hold or len(connection.tasks) >= self.settings.max_inflight_commands:
                self._queue_command(connection, websocket, event)  # a limit may hold it back
            else:
                self._start_command(connection, websocket, event)
        elif kind is Pong:
            connection.heartbeat.on_pong()
        elif kind is LatencyResponse:
            connection.heartbeat.on_latency_response(time.monotonic())
        elif kind is InvalidRequest:
            assert isinstance(event, InvalidRequest)
            self._count("invalid-request")
            answer_invalid(connection, event)
        else:
            if text and isinstance(data, bytes) and getattr(event, "reason", "") == "not JSON":
                try:
                    data.decode()
                except UnicodeDecodeError as error:
                    websocket.fail_invalid_text(error)
                    return
            self._count(getattr(event, "reason", "ignored"))

    def _start_command(
        self, connection: Connection, websocket: FastPathConnection, request: CommandRequest
    ) -> None:
        task = start_eagerly(run_command(self.api, connection, request))
        if task is None:
            return  # answered without waiting: no task needed
        tasks = connection.tasks
        tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            if done.cancelled():
                return  # the connection is going away
            if connection.waiting:
                self._start_waiting(connection, websocket)

        task.add_done_callback(finished)

    def _queue_command(
        self, connection: Connection, websocket: FastPathConnection, request: CommandRequest
    ) -> None:
        """Start ``request``, or queue it and stop reading the socket while a limit holds.

        Two limits: ``max_inflight_commands`` running commands (those that wait), and the
        connection's pending output past ``output_limit`` (half of ``max_send_buffer_bytes``):
        commands that finish without waiting take no slot, so only the size of their answers
        bounds them. Queued commands start in arrival order when a command finishes or the
        transport has drained (``resume_writing``); a later request queues behind them.
        """
        if connection.is_dead:
            return  # closing or gone: its answer could not be delivered
        waiting = connection.waiting
        if not waiting and len(connection.tasks) < self.settings.max_inflight_commands:
            if not connection.output_full:
                websocket.hold = websocket.writing_paused  # nothing else holds any more
                self._start_command(connection, websocket, request)
                return
            self._count("output-backpressure")
        waiting.append(request)
        websocket.hold = True
        if websocket.on_drain is None:
            websocket.on_drain = lambda: self._drained(connection, websocket)
        websocket.pause_reading()

    def _start_waiting(self, connection: Connection, websocket: FastPathConnection) -> None:
        """Start queued commands in arrival order while no limit holds; then read the socket again."""
        waiting = connection.waiting
        tasks = connection.tasks
        limit = self.settings.max_inflight_commands
        # Commands that complete without waiting make no task: start as many as fit.
        while waiting and len(tasks) < limit:
            if connection.is_dead:
                waiting.clear()
                return
            if connection.output_full:
                return  # the transport is paused (see Connection.output_full): _drained follows
            self._start_command(connection, websocket, waiting.popleft())
        if not waiting:
            websocket.hold = websocket.writing_paused or connection.is_dead
            websocket.resume_reading()

    def _drained(self, connection: Connection, websocket: FastPathConnection) -> None:
        """The transport's write buffer fell to its low-water mark: start what the output held."""
        if connection.waiting:
            self._start_waiting(connection, websocket)

    async def _cleanup(self, connection: Connection) -> None:
        """Forget a departed connection everywhere: its commands, its registry entry, its rooms."""
        connection.waiting.clear()
        for task in list(connection.tasks):
            # Its replies could not be delivered any more; stop them before removing its state.
            task.cancel()
        if connection.tasks:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        # Owners that are restarting answer EUNAVAILABLE: the clean-up retries for a while, or the
        # connection would stay behind as a ghost. Each step is idempotent.
        try:
            await drop_connection(self.directory, connection.id, window=_CLEANUP_WINDOW)
        except Exception:
            logger.exception("cleanup of connection %s failed", connection.id)
        await self.api.app.run_hooks("disconnection", connection)

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    # -- heartbeat -------------------------------------------------------------------------------

    async def _ping_loop(self) -> None:
        interval = self.settings.ping_interval
        while True:
            await asyncio.sleep(interval)
            for connection in list(self.connections.values()):
                if connection.heartbeat.on_ping_tick() is PingAction.CLOSE:
                    connection.close_soon(PING_TIMEOUT, "ping timeout")
                else:
                    connection.send_frame(_PING_FRAME)

    async def _latency_loop(self) -> None:
        interval = self.settings.latency_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections.values()):
                heartbeat = connection.heartbeat
                latency = heartbeat.latency_ms
                if heartbeat.on_latency_tick(now):
                    connection.send(LATENCY, latency)
                    connection.send_frame(_LATENCY_REQUEST_FRAME)

    # -- fan-out ---------------------------------------------------------------------------------

    def deliver(
        self, message: bytes, targets: Sequence[str] | None = None, exclude: Collection[str] = ()
    ) -> int:
        """Write one encoded Mesh message to local connections; returns how many were written.

        ``targets`` None means every local connection. The WebSocket frame is built once.
        """
        frame = text_frame(message)
        connections = self.connections
        sent = 0
        if targets is None:
            # No copy needed: a failed send aborts its transport, and the connection leaves this
            # dict later, in its handler task, never during this loop.
            for cid, connection in connections.items():
                if cid not in exclude and connection.send_frame(frame):
                    sent += 1
            return sent
        for cid in targets:
            target = connections.get(cid)
            if target is not None and cid not in exclude and target.send_frame(frame):
                sent += 1
        return sent


def _upgrade_request(request: Request | None, remote_address: Any) -> UpgradeRequest:
    if request is None:
        return UpgradeRequest(path="/", query={}, headers=Headers(), remote_address=remote_address)
    parts = urlsplit(request.path)
    return UpgradeRequest(
        path=parts.path or "/",
        query=dict(parse_qsl(parts.query)),
        headers=request.headers,
        remote_address=remote_address,
    )
