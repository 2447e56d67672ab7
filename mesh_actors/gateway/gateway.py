"""The gateway: terminates WebSockets, authenticates upgrades, runs commands, writes fan-out.

It owns its sockets and their per-connection state (heartbeat, dialect, running commands); every
other piece of state belongs to a shard and is reached over the actor links. It also answers plain
HTTP ``GET /healthz`` (alive) and ``GET /readyz`` (accepting connections) on the same port.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
import uuid
from collections.abc import Collection, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..actors.links import Directory
from ..protocol.dialect import Dialect, split_builtin
from ..protocol.errors import CodeError
from ..protocol.frames import CommandRequest, InvalidRequest, LatencyResponse, Pong, decode_frame, encode_push
from ..protocol.heartbeat import PingAction
from ..protocol.names import ASSIGN_ID, LATENCY, LATENCY_REQUEST, PING
from ..protocol.wsframe import text_frame
from ..server.auth import UpgradeRequest, rejection_of
from .close_codes import GOING_AWAY, INTERNAL_ERROR, PING_TIMEOUT
from .connection import Connection
from .dispatch import answer_invalid, run_command
from .eager import start_eagerly
from .fastpath import FastPathConnection

if TYPE_CHECKING:
    from ..server.mesh_server import MeshServer

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_CLEANUP_ATTEMPTS = 8
_PING_FRAME = text_frame(encode_push(PING, {}))
_LATENCY_REQUEST_FRAME = text_frame(encode_push(LATENCY_REQUEST, {}))


class Gateway:
    """One WebSocket endpoint of a deployment (one per process in the inline runtime)."""

    def __init__(self, server: MeshServer, directory: Directory, gateway_id: str | None = None) -> None:
        self.server = server
        self.settings = server.settings
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
            # Mesh has its own application-level ping (spec §1.5); the WebSocket one would double it.
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
        authenticate = self.server.authenticator
        if authenticate is None:
            return None
        try:
            auth = authenticate(upgrade)
            if inspect.isawaitable(auth):
                auth = await auth
        except Exception as error:
            status, message = rejection_of(error)
            logger.info("upgrade rejected with %s: %r", status, error)
            return websocket.respond(status, message + "\n")
        if auth is None:
            return websocket.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        websocket.mesh_auth = auth  # type: ignore[attr-defined]
        return None

    # -- one connection --------------------------------------------------------------------------

    async def _handle(self, websocket: FastPathConnection) -> None:
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
            server=self.server,
            request=getattr(websocket, "mesh_upgrade", None) or _upgrade_request(websocket.request, None),
            auth=getattr(websocket, "mesh_auth", None),
            max_send_buffer_bytes=settings.max_send_buffer_bytes,
            max_missed_pongs=settings.max_missed_pongs,
            close_timeout=settings.close_timeout,
        )
        cid = connection.id
        try:
            await self.directory.connection_shard(cid).call("register", cid, self.id, connection.auth)
        except Exception:
            logger.exception("could not register connection %s; closing it", cid)
            await websocket.close(INTERNAL_ERROR, "registration failed")
            return
        self.connections[cid] = connection
        try:
            # Both identity frames: each stock client ignores the other dialect's (spec §7.4).
            for dialect in Dialect:
                connection.send(dialect.name_of(ASSIGN_ID), cid)
            await self.server.run_hooks("connection", connection)
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
            if len(connection.tasks) >= self.settings.max_inflight_commands:
                # Backpressure: queue it and stop reading this socket until a command finishes.
                connection.waiting.append(event)
                websocket.pause_reading()
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
        task = start_eagerly(run_command(self.server, connection, request))
        if task is None:
            return  # answered without waiting: no task needed
        tasks = connection.tasks
        tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            waiting = connection.waiting
            if done.cancelled():
                return  # the connection is going away
            # Commands that complete without waiting make no task: start as many as fit.
            while waiting and len(tasks) < self.settings.max_inflight_commands:
                self._start_command(connection, websocket, waiting.popleft())
            if not waiting:
                websocket.resume_reading()

        task.add_done_callback(finished)

    async def _cleanup(self, connection: Connection) -> None:
        """Forget a departed connection everywhere: its commands, its registry entry, its rooms."""
        connection.waiting.clear()
        for task in list(connection.tasks):
            # Its replies could not be delivered any more; stop them before removing its state.
            task.cancel()
        if connection.tasks:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        cid = connection.id
        # A shard that is restarting answers EUNAVAILABLE: retry for a while, or the connection
        # would stay behind as a ghost. Both steps are idempotent.
        for attempt in range(_CLEANUP_ATTEMPTS):
            try:
                rooms = await self.directory.connection_shard(cid).call("unregister", cid)
                if rooms:
                    await self.server.room_manager.leave_rooms(cid, rooms)
                break
            except CodeError as error:
                if error.code != "EUNAVAILABLE" or attempt == _CLEANUP_ATTEMPTS - 1:
                    logger.error("cleanup of connection %s failed: %s", cid, error)
                    break
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            except Exception:
                logger.exception("cleanup of connection %s failed", cid)
                break
        await self.server.run_hooks("disconnection", connection)

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
        self, payload: bytes, targets: Sequence[str] | None = None, exclude: Collection[str] = ()
    ) -> int:
        """Write one encoded Mesh frame to local connections; returns how many were written.

        ``targets`` None means every local connection. The WebSocket frame is built once.
        """
        frame = text_frame(payload)
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

    def disconnect(self, connection_ids: Sequence[str], code: int = 1000, reason: str = "") -> int:
        """Close the given local connections; returns how many were found."""
        found = 0
        for cid in connection_ids:
            connection = self.connections.get(cid)
            if connection is not None:
                connection.close_soon(code, reason)
                found += 1
        return found


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
