"""The asyncio Mesh client: connection life cycle, commands, heartbeats, rooms and metadata.

Life cycle (docs/protocol.md#client-life-cycle, with the deviations listed on :class:`MeshClient`)::

    OFFLINE --connect()--> CONNECTING --assign-id--> ONLINE --connection lost--> RECONNECTING
       ^                       |                      |  ^                            |
       |                       +-- attempt failed ----+  +--------- assign-id --------+
       +------ close(), reconnect disabled, or max_reconnect_attempts exhausted ------+

A connection attempt is: WebSocket handshake, wait for ``assign-id``, flush the offline queue.
Only then is the client ONLINE, so nothing but queued commands reaches a connection whose
identity is unknown, and queued commands keep their order ahead of new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from ..protocol import Dialect, MergeStrategy, encode_frame, is_error_payload, split_builtin
from ..protocol.names import (
    ASSIGN_ID,
    GET_CONNECTION_METADATA,
    GET_MY_CONNECTION_METADATA,
    GET_ROOM_METADATA,
    JOIN_ROOM,
    LATENCY,
    LATENCY_REQUEST,
    LATENCY_RESPONSE,
    LEAVE_ROOM,
    PING,
    PONG,
    SET_MY_CONNECTION_METADATA,
)
from .connection import Connection
from .emitter import EventEmitter, Listener
from .errors import MeshClientError, MeshCommandError, MeshConnectionError, MeshTimeoutError
from .inbound import Push, Response, decode_inbound
from .offline import OfflineQueue
from .options import ClientOptions
from .requests import PendingRequests
from .results import JoinRoomResult, PresenceCallback
from .status import ClientStatus
from .watchdog import Watchdog

__all__ = ["MeshClient"]

logger = logging.getLogger("mesh_actors.client")

OFFLINE, RECONNECTING, CONNECTING, ONLINE = (
    ClientStatus.OFFLINE,
    ClientStatus.RECONNECTING,
    ClientStatus.CONNECTING,
    ClientStatus.ONLINE,
)


class MeshClient:
    """A client of a Mesh (``mesh/``) or @prsm/realtime (``rt/``) server.

    ::

        async with MeshClient("ws://127.0.0.1:8080") as client:
            print(await client.command("echo", {"hello": "world"}))
            client.on("hello", print)          # server: broadcast("hello", ...)
            await client.join_room("lobby")

    ``options`` is a :class:`ClientOptions`; keyword arguments are the same fields and override
    it. Events (register with :meth:`on`; callbacks may be sync or async)::

        connect(connection_id)     the client became ONLINE (first connect and every reconnect)
        disconnect()               an ONLINE connection ended (lost, dropped or closed)
        reconnect(connection_id)   ONLINE again after a loss, remembered rooms rejoined
        reconnect_failed()         max_reconnect_attempts exhausted; the client is OFFLINE
        ping()                     the server's heartbeat (answered with ``pong`` automatically)
        latency(ms)                the round trip the server measured (answered automatically)
        <command>(payload)         any other push, e.g. a server ``broadcast("hello", "world")``
                                   fires ``hello`` with ``"world"``; built-in pushes such as
                                   ``mesh/record-update`` are emitted under their wire names

    A push whose name is one of the life-cycle names above fires those callbacks too.

    Deliberate differences from the reference client (docs/protocol.md#differences-from-the-stock-clients):

    * ONLINE starts at ``assign-id``, not at socket open; commands issued before are queued.
    * A command on an OFFLINE client raises :class:`MeshConnectionError` instead of connecting
      implicitly; call :meth:`connect` first.
    * Commands already sent when the connection is lost fail at once with
      :class:`MeshConnectionError` (their response can never arrive, and resending a
      non-idempotent command is unsafe); unsent ones wait in the bounded offline queue.
    * Error payloads raise :class:`MeshCommandError` unless ``raise_errors=False``.
    * Reconnect delays are exponential with jitter, and the first attempt waits one delay too,
      so clients dropped together do not come back together.
    * :meth:`close` is not permanent: a later :meth:`connect` reconnects automatically again.
      Going OFFLINE (close, or reconnecting given up or disabled) forgets the remembered rooms.
    * Responses are not re-emitted as events; only pushes are.
    """

    def __init__(self, url: str, options: ClientOptions | None = None, **overrides: Any) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise ValueError(str(exc)) from None
        options = options if options is not None else ClientOptions()
        self._url = url
        self._options = replace(options, **overrides) if overrides else options
        dialect = self._options.dialect  # a Dialect or None once ClientOptions validated it
        self._dialect: Dialect | None = dialect if isinstance(dialect, Dialect) else None
        self._status = OFFLINE
        self._connection_id: str | None = None
        self._connection: Connection | None = None
        self._assigned: asyncio.Future[str] | None = None
        self._closed = False
        self._forced_reconnect = False
        self._requests = PendingRequests()
        self._offline = OfflineQueue(self._options.offline_queue_size, self._options.offline_queue_expiry)
        self._emitter = EventEmitter()
        self._watchdog = Watchdog(self._options.watchdog_period, self._on_watchdog)
        self._backoff = self._options.backoff()
        self._rng = random.Random()
        self._rooms: dict[str, PresenceCallback | None] = {}
        self._lifecycle: asyncio.Task[None] | None = None
        self._resume: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    # -- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server URL (``ws://`` or ``wss://``)."""
        return self._url

    @property
    def options(self) -> ClientOptions:
        """The effective options."""
        return self._options

    @property
    def status(self) -> ClientStatus:
        """Where the client is in its life cycle."""
        return self._status

    @property
    def connection_id(self) -> str | None:
        """The id from the last ``assign-id``; kept while disconnected, ``None`` before the first."""
        return self._connection_id

    @property
    def dialect(self) -> Dialect | None:
        """The dialect of built-in commands: configured, or detected at the first ``assign-id``."""
        return self._dialect

    @property
    def joined_rooms(self) -> frozenset[str]:
        """Rooms joined through :meth:`join_room` and rejoined after every reconnect."""
        return frozenset(self._rooms)

    # -- events -----------------------------------------------------------------------------

    def on(self, event: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` on every ``event`` (see the class docstring for the arguments).

        Returns a function that removes the callback. An exception raised by a callback is
        logged and otherwise ignored.
        """
        return self._emitter.on(event, callback)

    # -- life cycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and return once the server has assigned a connection id.

        If the client is already connecting or reconnecting, wait for that to finish. Raises
        :class:`MeshConnectionError` if the connection cannot be established (``status`` holds
        the HTTP status of a rejected upgrade); a failed first connect is not retried.
        """
        if self._status is ONLINE:
            return
        waiter = self._wait_online()
        if self._status is OFFLINE:
            self._closed = False
            self._status = CONNECTING
            self._lifecycle = asyncio.create_task(self._connect_once(), name="mesh-client-connect")
        await waiter

    async def close(self) -> None:
        """Close the connection and stop reconnecting.

        Commands still waiting fail with :class:`MeshConnectionError`. Emits ``disconnect`` (with
        the status already OFFLINE) if the client was ONLINE. :meth:`connect` may be called again.
        """
        self._closed = True
        self._forced_reconnect = False
        was_online = self._status is ONLINE
        current = asyncio.current_task()
        tasks = [
            task
            for task in (self._lifecycle, self._resume)
            if task is not None and not task.done() and task is not current
        ]
        for task in tasks:
            task.cancel()
        self._lifecycle = self._resume = None
        self._watchdog.stop()
        connection, self._connection = self._connection, None
        self._status = OFFLINE
        self._rooms.clear()

        def closed(command: str) -> MeshConnectionError:
            return MeshConnectionError(f'The client was closed; "{command}" got no response.')

        self._offline.fail_all(closed)
        self._requests.fail_all(closed)
        self._release_waiters(MeshConnectionError("The client was closed."))
        if tasks:
            await asyncio.wait(tasks)
        if connection is not None:
            await connection.close()
        if was_online:
            self._emitter.emit("disconnect")

    async def reconnect(self) -> None:
        """Drop the connection now and reconnect, as the watchdog does for a silent server.

        Returns once ONLINE again with the remembered rooms rejoined; raises
        :class:`MeshConnectionError` if the client is not ONLINE or reconnecting fails. Works even
        with ``should_reconnect=False``.
        """
        connection = self._connection
        if self._status is not ONLINE or connection is None:
            raise MeshConnectionError("Not connected.")
        waiter = self._wait_online()
        self._forced_reconnect = True
        connection.abort()
        await waiter
        if self._resume is not None:
            await asyncio.wait([self._resume])

    async def __aenter__(self) -> MeshClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connect_once(self) -> None:
        try:
            await self._attempt()
        except MeshConnectionError as exc:
            self._status = OFFLINE
            self._offline.fail_all(_never_sent)
            self._release_waiters(exc)
        else:
            self._go_online()

    async def _reconnect_loop(self) -> None:
        limit = self._options.max_reconnect_attempts
        attempt = 0
        error: MeshConnectionError | None = None
        while limit is None or attempt < limit:
            attempt += 1
            await asyncio.sleep(self._backoff.delay(attempt, self._rng))
            try:
                connection = await self._attempt()
            except MeshConnectionError as exc:
                error = exc
                logger.info("Reconnect attempt %d to %s failed: %s", attempt, self._url, exc)
                continue
            self._go_online()
            self._resume = asyncio.create_task(self._rejoin(connection), name="mesh-client-rejoin")
            return
        self._status = OFFLINE
        self._rooms.clear()
        failure = MeshConnectionError(f"Gave up reconnecting to {self._url} after {attempt} attempts.")
        failure.__cause__ = error
        self._offline.fail_all(_never_sent)
        self._release_waiters(failure)
        logger.warning("%s", failure)
        self._emitter.emit("reconnect_failed")

    async def _attempt(self) -> Connection:
        """Open a connection, wait for ``assign-id``, flush the offline queue.

        On success the connection is current but the client not yet ONLINE (see
        :meth:`_go_online`); on failure nothing of the attempt remains.
        """
        timeout = self._options.open_timeout
        self._assigned = asyncio.get_running_loop().create_future()
        connection: Connection | None = None
        try:
            try:
                async with asyncio.timeout(timeout):
                    connection = await Connection.open(
                        self._url,
                        on_message=self._on_message,
                        on_close=self._on_close,
                        headers=self._options.headers,
                        close_timeout=self._options.close_timeout,
                        max_message_size=self._options.max_message_size,
                    )
                    self._connection = connection
                    await self._assigned
            except TimeoutError:
                stage = "the WebSocket handshake" if connection is None else "assign-id"
                raise MeshConnectionError(f"Timed out after {timeout:g} s waiting for {stage}.") from None
            await self._flush(connection)
            # The read loop may have ended while we flushed; checking here, with no await before
            # the caller sets ONLINE, guarantees that a later loss is seen by _on_close.
            if connection.closed:
                raise MeshConnectionError("The connection closed right after it was established.")
        except BaseException:
            if connection is not None:
                if self._connection is connection:
                    self._connection = None
                connection.abort()
            raise
        finally:
            self._assigned = None
        return connection

    async def _flush(self, connection: Connection) -> None:
        # Commands queued while we flush are sent by this same loop, so they stay in order.
        while (entry := self._offline.pop()) is not None:
            if entry.future.done():  # its caller gave up
                continue
            try:
                await connection.send(entry.frame)
            except MeshConnectionError:
                self._offline.requeue(entry)
                raise
            self._requests.mark_sent(entry.request_id)

    def _go_online(self) -> None:
        self._status = ONLINE
        self._watchdog.start()
        self._release_waiters(None)
        self._emitter.emit("connect", self._connection_id)

    async def _rejoin(self, connection: Connection) -> None:
        rooms = list(self._rooms.items())
        if rooms:
            results = await asyncio.gather(
                *(self.join_room(room, callback) for room, callback in rooms), return_exceptions=True
            )
            for (room, _), result in zip(rooms, results, strict=True):
                if isinstance(result, BaseException):
                    logger.error("Could not rejoin room %r after reconnecting: %r", room, result)
        if self._connection is connection and self._status is ONLINE:
            self._emitter.emit("reconnect", self._connection_id)

    def _on_close(self, connection: Connection) -> None:
        if connection is not self._connection:
            return  # closed on purpose, or an abandoned attempt
        if self._assigned is not None and not self._assigned.done():
            self._assigned.set_exception(
                MeshConnectionError(
                    f"The server closed the connection before assign-id (code {connection.close_code})."
                )
            )
            return
        if self._status is not ONLINE:
            return  # _attempt is flushing and will notice connection.closed
        self._connection = None
        self._watchdog.stop()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._requests.fail_sent(
            lambda command: MeshConnectionError(f'The connection was lost before "{command}" was answered.')
        )
        forced, self._forced_reconnect = self._forced_reconnect, False
        if (self._options.should_reconnect or forced) and not self._closed:
            self._status = RECONNECTING
            self._emitter.emit("disconnect")
            self._lifecycle = asyncio.create_task(self._reconnect_loop(), name="mesh-client-reconnect")
        else:
            self._status = OFFLINE
            self._rooms.clear()
            self._offline.fail_all(_never_sent)
            self._emitter.emit("disconnect")

    def _on_watchdog(self) -> None:
        connection = self._connection
        if connection is None or self._status is not ONLINE:
            return
        logger.warning("No ping from %s for %g s; dropping the connection.", self._url, self._watchdog.period)
        connection.abort()

    def _wait_online(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def _release_waiters(self, error: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # -- inbound ----------------------------------------------------------------------------

    async def _on_message(self, connection: Connection, message: str | bytes) -> None:
        if connection is not self._connection:
            return  # left over from a connection we already gave up on
        frame = decode_inbound(message)
        if isinstance(frame, Response):
            if not self._requests.resolve(frame.id, frame.payload):
                logger.debug("Dropped a response to an unknown or finished request %r", frame.id)
        elif isinstance(frame, Push):
            await self._on_push(connection, frame)
        else:
            logger.debug("Ignored a message from the server: %s", frame.reason)

    async def _on_push(self, connection: Connection, push: Push) -> None:
        command, payload = push.command, push.payload
        if command == PING:
            self._watchdog.feed()
            self._emitter.emit("ping")
            await self._reply(connection, PONG, {})
        elif command == LATENCY_REQUEST:
            await self._reply(connection, LATENCY_RESPONSE, {} if payload is None else payload)
        elif command == LATENCY:
            self._emitter.emit("latency", payload)
        elif (builtin := split_builtin(command)) is not None and builtin[1] == ASSIGN_ID:
            self._on_assign_id(builtin[0], payload)
        else:
            self._emitter.emit(command, payload)

    def _on_assign_id(self, dialect: Dialect, connection_id: Any) -> None:
        if self._dialect is None:
            # our server sends both; the first one decides (docs/protocol.md#dialects)
            self._dialect = dialect
        elif dialect is not self._dialect:
            return  # the other dialect's copy of the identity frame
        if not isinstance(connection_id, str) or not connection_id:
            logger.warning("Ignored an assign-id frame without a connection id: %r", connection_id)
            return
        self._connection_id = connection_id
        if self._assigned is not None and not self._assigned.done():
            self._assigned.set_result(connection_id)

    async def _reply(self, connection: Connection, command: str, payload: Any) -> None:
        # Heartbeat answers carry a fresh id like the stock client's (the server never answers
        # them), go only to the connection that asked, and are never queued.
        frame = encode_frame({"id": self._requests.next_id(), "command": command, "payload": payload})
        with contextlib.suppress(MeshConnectionError):
            await connection.send(frame)

    # -- commands ---------------------------------------------------------------------------

    async def command(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        raise_errors: bool | None = None,
    ) -> Any:
        """Send command ``name`` and return the server's response payload.

        ``payload`` ``None`` is sent as ``{}`` (like the stock client). ``timeout`` overrides
        ``command_timeout`` (``math.inf`` waits forever); ``raise_errors`` overrides the option of
        the same name. A response without a payload returns ``None``.

        While CONNECTING or RECONNECTING the command waits in the offline queue and is sent once
        the connection is back. Raises :class:`MeshCommandError` (error payload),
        :class:`MeshTimeoutError` (no response in time, or expired in the offline queue) or
        :class:`MeshConnectionError` (OFFLINE, queue full, connection lost after sending, or
        client closed).
        """
        if self._status is OFFLINE:
            raise MeshConnectionError(f'Not connected; call connect() before sending "{name}".')
        limit = self._options.command_timeout if timeout is None else timeout
        request_id, future = self._requests.open(name)
        try:
            frame = encode_frame(
                {"id": request_id, "command": name, "payload": {} if payload is None else payload}
            )
            deadline = asyncio.timeout(limit)
            try:
                async with deadline:
                    await self._transmit(request_id, name, frame, future)
                    result = await future
            except TimeoutError:
                if not deadline.expired():
                    raise  # expired in the offline queue: already a MeshTimeoutError
                raise MeshTimeoutError(f'Command "{name}" timed out after {limit:g} s.') from None
        finally:
            self._requests.close(request_id)
            self._offline.discard(request_id)
        if (self._options.raise_errors if raise_errors is None else raise_errors) and is_error_payload(
            result
        ):
            raise MeshCommandError(name, result)
        return result

    async def _transmit(self, request_id: int, name: str, frame: bytes, future: asyncio.Future[Any]) -> None:
        connection = self._connection
        if self._status is ONLINE and connection is not None:
            try:
                await connection.send(frame)
            except MeshConnectionError:
                pass  # the socket died under us and the frame was not sent: queue it below
            else:
                self._requests.mark_sent(request_id)
                return
        if self._status is OFFLINE:
            raise MeshConnectionError(f'Not connected; "{name}" was not sent.')
        self._offline.push(request_id, name, frame, future)

    async def _builtin(self, suffix: str, payload: Any) -> Any:
        """Run a built-in command in the connection's dialect; error payloads always raise, since
        the helpers return shaped values."""
        if self._dialect is None and self._status is CONNECTING:
            await self._wait_online()  # the dialect is known once assign-id arrives
        if self._dialect is None:
            raise MeshConnectionError("Not connected; call connect() first.")
        name = self._dialect.name_of(suffix)
        result = await self.command(name, payload, raise_errors=True)
        if not isinstance(result, dict):
            raise MeshClientError(
                f'Unexpected response to "{name}": {result!r}', code="EPROTOCOL", name="ProtocolError"
            )
        return result

    # -- rooms and metadata -----------------------------------------------------------------

    async def join_room(self, room: str, on_presence: PresenceCallback | None = None) -> JoinRoomResult:
        """Join ``room``; returns ``{"success", "present"}`` where ``present`` lists every member
        (this connection included) as ``{"id", "metadata"}``.

        The room is remembered and rejoined after every reconnect. ``on_presence`` is stored with
        it for presence updates; subscribing to presence is not implemented yet, so it is not
        called for now.
        """
        result = await self._builtin(JOIN_ROOM, {"roomName": room})
        success = result.get("success") is True
        if success:
            self._rooms[room] = on_presence
        return {"success": success, "present": list(result.get("present") or [])}

    async def leave_room(self, room: str) -> bool:
        """Leave ``room`` and stop rejoining it; returns the server's ``success``."""
        result = await self._builtin(LEAVE_ROOM, {"roomName": room})
        success = result.get("success") is True
        if success:
            self._rooms.pop(room, None)
        return success

    async def get_connection_metadata(self, connection_id: str | None = None) -> Any:
        """The metadata of connection ``connection_id`` (this connection's if ``None``), or
        ``None`` if it has none."""
        if connection_id is None:
            result = await self._builtin(GET_MY_CONNECTION_METADATA, {})
        else:
            result = await self._builtin(GET_CONNECTION_METADATA, {"connectionId": connection_id})
        return result.get("metadata")

    async def set_connection_metadata(self, value: Any, strategy: MergeStrategy | str = "replace") -> bool:
        """Set this connection's metadata; ``strategy`` is ``"replace"``, ``"merge"`` (shallow) or
        ``"deepMerge"``. Returns the server's ``success``."""
        strategy = MergeStrategy(strategy)
        result = await self._builtin(
            SET_MY_CONNECTION_METADATA, {"metadata": value, "options": {"strategy": strategy.value}}
        )
        return result.get("success") is True

    async def get_room_metadata(self, room: str) -> Any:
        """The metadata of ``room``, or ``None`` if it has none."""
        result = await self._builtin(GET_ROOM_METADATA, {"roomName": room})
        return result.get("metadata")


def _never_sent(command: str) -> MeshConnectionError:
    return MeshConnectionError(f'Not connected; "{command}" was never sent.')
