"""The data-plane link: actor-to-actor messages over a direct, framed TCP stream.

Ray actor calls cost ~1.5 ms each here; a plain asyncio stream carries ~100k messages/s. So
gateways and shards talk over these links and use Ray only to find each other (control plane).

- :class:`LinkServer` exposes one actor object, or several hosted by one process (a Ray worker
  hosting several shards): every frame names a public method and its arguments; ``call`` frames get
  a reply, ``tell`` frames do not.
- :class:`Link` is an :class:`~mesh_actors.actors.links.ActorRef` to a remote actor. Frames sent in
  one event-loop tick leave in one write (coalescing). When the peer goes away, calls already sent
  fail with ``EUNAVAILABLE``; later messages wait (bounded) while the link resolves the actor's
  address again through the control plane and reconnects, e.g. after Ray restarted the actor.

A link opens with two raw (unpickled) frames: the deployment's shared token, then the name of the
actor it wants. Nothing is unpickled from a peer that has not proven it belongs to the deployment.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import itertools
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from ..gateway.eager import step_eagerly
from ..protocol.errors import CodeError
from .framing import FrameReader, FramingError, encode

__all__ = ["CALL", "REPLY", "TELL", "Link", "LinkGoneError", "LinkServer", "unavailable"]

logger = logging.getLogger(__name__)

CALL, TELL, REPLY = 1, 2, 3
_LENGTH = struct.Struct("!I")
_MAX_OPENING = 1024
"""Largest token or actor name a link may open with."""

Resolver = Callable[[], Awaitable[tuple[str, int]]]


def unavailable(name: str, detail: str) -> CodeError:
    """The error of a call whose actor could not be reached (it may or may not have run)."""
    return CodeError(f"{name} is unavailable: {detail}", "EUNAVAILABLE", "UnavailableError")


class LinkGoneError(Exception):
    """Raised by a resolver when the actor is gone for good: stop reconnecting at once."""


def _opening(token: bytes, name: str) -> bytes:
    """The raw frames a link starts with: the token, then the name of the actor it wants."""
    encoded = name.encode()
    return _LENGTH.pack(len(token)) + token + _LENGTH.pack(len(encoded)) + encoded


class _Outbox:
    """Frames waiting for the end of the current event-loop tick, then written in one call."""

    __slots__ = ("_frames", "_loop", "_scheduled", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._frames: list[bytes] = []
        self._scheduled = False
        self._transport: asyncio.Transport | None = None

    def attach(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport

    def put(self, frame: bytes) -> None:
        self._frames.append(frame)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        frames, self._frames = self._frames, []
        transport = self._transport
        if frames and transport is not None and not transport.is_closing():
            transport.write(b"".join(frames))


# -- server side ---------------------------------------------------------------------------------


class LinkServer:
    """Serves the public methods of ``target`` to authenticated links.

    ``target`` is one actor object (every link gets it, whatever name it asks for), or a mapping
    of actor names to objects hosted by this process (a link gets the one it names; a link naming
    another is refused).
    """

    def __init__(self, target: Any, token: bytes, *, name: str = "") -> None:
        self.targets: Mapping[str, Any] | None = target if isinstance(target, Mapping) else None
        self.target = None if self.targets is not None else target
        self.name = name or type(target).__name__
        self._token = token
        self._server: asyncio.Server | None = None
        self._protocols: set[_ServerProtocol] = set()

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port``; returns the bound address."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerProtocol(self), host, port)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        """Stop listening and drop every link."""
        if self._server is not None:
            self._server.close()
        for protocol in list(self._protocols):
            protocol.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, server: LinkServer) -> None:
        self._server = server
        self._reader = FrameReader()
        self._pending = bytearray()
        self._authenticated = False
        self._target: Any = None
        """The actor this link asked for (set once the opening frames were read)."""
        self._transport: asyncio.Transport | None = None
        self._outbox = _Outbox(asyncio.get_running_loop())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        self._outbox.attach(self._transport)
        self._server._protocols.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._protocols.discard(self)
        self._outbox.attach(None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._target is None:
            data = self._open(data)
            if self._target is None:
                return
        try:
            messages = self._reader.feed(data)
        except (FramingError, Exception):
            logger.warning("link to %s: malformed frame, closing", self._server.name, exc_info=True)
            self.abort()
            return
        for message in messages:
            self._dispatch(message)

    def _raw_frame(self) -> bytes | None:
        """The next raw opening frame in the pending bytes, or None until it is complete."""
        pending = self._pending
        if len(pending) < 4:
            return None
        (length,) = _LENGTH.unpack_from(pending)
        if length > _MAX_OPENING:
            raise FramingError(f"opening frame of {length} bytes")
        if len(pending) < 4 + length:
            return None
        frame = bytes(pending[4 : 4 + length])
        del pending[: 4 + length]
        return frame

    def _open(self, data: bytes) -> bytes:
        """Consume the token and actor-name frames; returns the bytes after them."""
        self._pending += data
        try:
            if not self._authenticated:
                token = self._raw_frame()
                if token is None:
                    return b""
                if not hmac.compare_digest(token, self._server._token):
                    logger.warning("link to %s: wrong token, closing", self._server.name)
                    self.abort()
                    return b""
                self._authenticated = True
            wanted = self._raw_frame()
        except FramingError as error:
            logger.warning("link to %s: %s, closing", self._server.name, error)
            self.abort()
            return b""
        if wanted is None:
            return b""
        targets = self._server.targets
        if targets is None:
            self._target = self._server.target
        else:
            self._target = targets.get(wanted.decode(errors="replace"))
            if self._target is None:
                logger.warning("link to %s: no actor %r here, closing", self._server.name, wanted)
                self.abort()
                return b""
        rest, self._pending = bytes(self._pending), bytearray()
        return rest

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == TELL:
            _, method, args = message
            self._invoke(None, method, args)
        elif kind == CALL:
            _, seq, method, args = message
            self._invoke(seq, method, args)

    def _invoke(self, seq: int | None, method: str, args: tuple[Any, ...]) -> None:
        try:
            if method.startswith("_"):
                raise CodeError(f"method {method!r} is not exposed", "EINVALID", "LinkError")
            result = getattr(self._target, method)(*args)
            if inspect.iscoroutine(result):
                # Run it now, as far as it goes without waiting (a broadcast never waits): its
                # messages and its reply then leave in this tick's writes, and no task is made.
                result, task = step_eagerly(result)
                if task is not None:
                    task.add_done_callback(lambda done: self._finish_task(seq, method, done))
                    return
        except Exception as error:
            self._finish(seq, method, False, error)
            return
        self._finish(seq, method, True, result)

    def _finish_task(self, seq: int | None, method: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._finish(seq, method, False, CodeError("cancelled", "ECANCELLED", "CancelledError"))
        elif task.exception() is not None:
            self._finish(seq, method, False, task.exception())  # type: ignore[arg-type]
        else:
            self._finish(seq, method, True, task.result())

    def _finish(self, seq: int | None, method: str, ok: bool, value: Any) -> None:
        if not ok and not isinstance(value, CodeError):
            if seq is None:
                logger.error("%s.%s failed", self._server.name, method, exc_info=value)
            value = CodeError(str(value), getattr(value, "code", None) or "ESERVER", type(value).__name__)
        if seq is None:
            if not ok:
                logger.debug("%s.%s (tell) failed: %s", self._server.name, method, value)
            return
        try:
            frame = encode((REPLY, seq, ok, value))
        except Exception as error:  # an unpicklable result
            frame = encode(
                (REPLY, seq, False, CodeError(f"unsendable result: {error}", "ESERVER", "LinkError"))
            )
        self._outbox.put(frame)


# -- client side ---------------------------------------------------------------------------------


class Link:
    """An :class:`ActorRef` to an actor served by a :class:`LinkServer` somewhere."""

    def __init__(
        self,
        name: str,
        resolve: Resolver,
        token: bytes,
        *,
        call_timeout: float = 30.0,
        reconnect_window: float = 15.0,
        max_backlog: int = 100_000,
        retry_methods: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self._retry_methods = retry_methods
        self._resolve = resolve
        self._token = token
        self._call_timeout = call_timeout
        self._reconnect_window = reconnect_window
        self._max_backlog = max_backlog
        self._loop = asyncio.get_running_loop()
        self._outbox = _Outbox(self._loop)
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[tuple[bytes, int | None]] = []
        self._inflight: dict[int, asyncio.Future[Any]] = {}
        self._queued: dict[int, asyncio.Future[Any]] = {}
        self._seq = itertools.count(1)
        self._closed = False

    @property
    def connected(self) -> bool:
        """True while a stream to the actor is open."""
        return self._transport is not None

    async def call(self, method: str, *args: Any) -> Any:
        # Reads are retried when the connection drops under them (e.g. the actor restarted after
        # the address was resolved); other calls report EUNAVAILABLE: they may have run.
        attempts = 3 if method in self._retry_methods else 1
        for attempt in range(attempts):
            try:
                return await self._call_once(method, args)
            except CodeError as error:
                if error.code != "EUNAVAILABLE" or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def _call_once(self, method: str, args: tuple[Any, ...]) -> Any:
        seq = next(self._seq)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._send(encode((CALL, seq, method, args)), seq, future)
        timer = self._loop.call_later(self._call_timeout, self._expire, seq)
        try:
            return await future
        finally:
            timer.cancel()
            self._inflight.pop(seq, None)
            self._queued.pop(seq, None)

    def tell(self, method: str, *args: Any) -> None:
        self._send(encode((TELL, method, args)), None, None)

    def _send(self, frame: bytes, seq: int | None, future: asyncio.Future[Any] | None) -> None:
        if self._closed:
            if future is not None:
                future.set_exception(unavailable(self.name, "link closed"))
            return
        if self._transport is not None:
            if future is not None and seq is not None:
                self._inflight[seq] = future
            self._outbox.put(frame)
            return
        if len(self._backlog) >= self._max_backlog:
            if future is not None:
                future.set_exception(unavailable(self.name, "too many messages waiting for a connection"))
            return
        self._backlog.append((frame, seq))
        if future is not None and seq is not None:
            self._queued[seq] = future
        if self._connecting is None:
            self._connecting = self._loop.create_task(self._connect())

    def _expire(self, seq: int) -> None:
        future = self._inflight.pop(seq, None) or self._queued.pop(seq, None)
        if future is not None and not future.done():
            future.set_exception(
                CodeError(
                    f"{self.name} did not answer within {self._call_timeout:g} s", "ETIMEOUT", "TimeoutError"
                )
            )

    async def _connect(self) -> None:
        deadline = time.monotonic() + self._reconnect_window
        delay = 0.02
        try:
            while not self._closed:
                try:
                    host, port = await self._resolve()
                    transport, _ = await self._loop.create_connection(
                        lambda: _ClientProtocol(self), host, port
                    )
                except LinkGoneError as error:
                    self._fail_backlog(str(error) or "gone")
                    return
                except Exception as error:
                    if time.monotonic() >= deadline:
                        self._fail_backlog(f"no connection within {self._reconnect_window:g} s ({error})")
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                transport = cast(asyncio.Transport, transport)
                transport.write(_opening(self._token, self.name))
                self._transport = transport
                self._outbox.attach(transport)
                backlog, self._backlog = self._backlog, []
                for frame, seq in backlog:
                    if seq is not None:
                        future = self._queued.pop(seq, None)
                        if future is None or future.done():
                            continue  # expired while waiting
                        self._inflight[seq] = future
                    self._outbox.put(frame)
                return
        finally:
            self._connecting = None

    def _fail_backlog(self, detail: str) -> None:
        dropped = len(self._backlog)
        self._backlog = []
        queued, self._queued = self._queued, {}
        for future in queued.values():
            if not future.done():
                future.set_exception(unavailable(self.name, detail))
        if dropped:
            logger.warning("link to %s: dropped %d message(s): %s", self.name, dropped, detail)

    def _on_reply(self, seq: int, ok: bool, value: Any) -> None:
        future = self._inflight.pop(seq, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _on_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._outbox.attach(None)
        inflight, self._inflight = self._inflight, {}
        for future in inflight.values():
            if not future.done():
                future.set_exception(unavailable(self.name, "connection lost"))
        if self._backlog and self._connecting is None and not self._closed:
            self._connecting = self._loop.create_task(self._connect())

    async def close(self) -> None:
        """Close the stream; later calls fail with ``EUNAVAILABLE``."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None:
            self._outbox.flush()
            self._transport.close()
        self._fail_backlog("link closed")


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, link: Link) -> None:
        self._link = link
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._reader.feed(data)
        except Exception:
            logger.warning("link to %s: malformed reply stream", self._link.name, exc_info=True)
            return
        for message in messages:
            if message[0] == REPLY:
                _, seq, ok, value = message
                self._link._on_reply(seq, ok, value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._on_lost(exc)
