"""The calling end of a data-plane link: an :class:`~mesh_actors.actors.ref.ActorRef` over TCP.

Ray actor calls cost ~1.5 ms each here; a plain asyncio stream carries ~100k messages/s. So
gateways and shards talk over these links and use Ray only to find each other (control plane).

A :class:`Link` sends the name of the method it is given (``method_name``) and its arguments to
a :class:`~.server.LinkServer`. Messages sent in one event-loop tick leave in one write. When the
peer goes away, calls already sent fail with ``ErrorCode.UNAVAILABLE`` (they may have run; those
marked ``retry_safe`` are sent again); later messages wait (bounded) while the link resolves the
actor's address again through the control plane and reconnects, e.g. after Ray restarted it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from ...actors.ref import ActorRef, is_retry_safe, method_name
from ...protocol.backoff import Backoff
from ...protocol.errors import CodeError, ErrorCode, unavailable
from .codec import CALL, REPLY, TELL, MessageReader, encode, encode_opening
from .outbox import Outbox

__all__ = ["Link", "LinkGoneError", "Resolver"]

logger = logging.getLogger(__name__)

A = TypeVar("A")
P = ParamSpec("P")

Resolver = Callable[[], Awaitable[tuple[str, int]]]
"""Finds the current data-plane address ``(host, port)`` of the actor a link is for."""

RECONNECT_BACKOFF = Backoff(initial=0.02, maximum=0.5, multiplier=2.0, jitter=0.0)
"""Delays between attempts to reach an actor again: 20 ms doubling up to 0.5 s."""
RETRY_SAFE_ATTEMPTS = 3
"""Times a ``retry_safe`` call is sent before its ``ErrorCode.UNAVAILABLE`` is reported."""


class LinkGoneError(Exception):
    """Raised by a resolver when the actor is gone for good: stop reconnecting at once."""


class Link(ActorRef[A]):
    """A link to actor ``name`` (of class ``A``), served by a :class:`~.server.LinkServer`."""

    def __init__(
        self,
        name: str,
        resolve: Resolver,
        token: bytes,
        *,
        call_timeout: float = 30.0,
        reconnect_window: float = 15.0,
        max_backlog: int = 100_000,
    ) -> None:
        self.name = name
        self._resolve = resolve
        self._token = token
        self._call_timeout = call_timeout
        self._reconnect_window = reconnect_window
        self._max_backlog = max_backlog
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._loop)
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[tuple[bytes, int | None]] = []
        """Messages waiting for a connection, with the sequence number of the calls among them."""
        self._inflight: dict[int, asyncio.Future[Any]] = {}
        self._queued: dict[int, asyncio.Future[Any]] = {}
        self._seq = itertools.count(1)
        self._closed = False

    async def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # Side-effect-free methods are sent again when the connection drops under them (e.g. the
        # actor restarted after its address was resolved); others fail as unavailable: they may
        # have run.
        name = method_name(method)
        attempts = RETRY_SAFE_ATTEMPTS if is_retry_safe(method) else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._call_once(name, args, kwargs)
            except CodeError as error:
                if error.code != ErrorCode.UNAVAILABLE or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _call_once(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        seq = next(self._seq)
        future: asyncio.Future[Any] = self._loop.create_future()
        message = (CALL, seq, name, args, kwargs) if kwargs else (CALL, seq, name, args)
        self._send(encode(message), seq, future)
        timer = self._loop.call_later(self._call_timeout, self._expire, seq)
        try:
            return await future
        finally:
            timer.cancel()
            self._inflight.pop(seq, None)
            self._queued.pop(seq, None)

    def tell(self, method: Callable[Concatenate[A, P], Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        name = method_name(method)
        self._send(encode((TELL, name, args, kwargs) if kwargs else (TELL, name, args)), None, None)

    def _send(self, message: bytes, seq: int | None, future: asyncio.Future[Any] | None) -> None:
        if self._closed:
            if future is not None:
                future.set_exception(self._unavailable("link closed"))
            return
        if self._transport is not None:
            if future is not None and seq is not None:
                self._inflight[seq] = future
            self._outbox.put(message)
            return
        if len(self._backlog) >= self._max_backlog:
            if future is not None:
                future.set_exception(self._unavailable("too many messages waiting for a connection"))
            return
        self._backlog.append((message, seq))
        if future is not None and seq is not None:
            self._queued[seq] = future
        if self._connecting is None:
            self._connecting = self._loop.create_task(self._connect())

    def _unavailable(self, detail: str) -> CodeError:
        return unavailable(f"{self.name} is unavailable: {detail}")

    def _expire(self, seq: int) -> None:
        future = self._inflight.pop(seq, None) or self._queued.pop(seq, None)
        if future is not None and not future.done():
            detail = f"{self.name} did not answer within {self._call_timeout:g} s"
            future.set_exception(CodeError(detail, ErrorCode.TIMEOUT, "TimeoutError"))

    async def _connect(self) -> None:
        deadline = time.monotonic() + self._reconnect_window
        attempt = 0
        try:
            while not self._closed:
                try:
                    host, port = await self._resolve()
                    transport, _ = await self._loop.create_connection(lambda: _Replies(self), host, port)
                except LinkGoneError as error:
                    self._fail_backlog(str(error) or "gone")
                    return
                except Exception as error:
                    if time.monotonic() >= deadline:
                        self._fail_backlog(f"no connection within {self._reconnect_window:g} s ({error})")
                        return
                    attempt += 1
                    await asyncio.sleep(RECONNECT_BACKOFF.delay(attempt))
                    continue
                self._connected(transport)
                return
        finally:
            self._connecting = None

    def _connected(self, transport: asyncio.Transport) -> None:
        """Open the link on ``transport`` and send what waited for it, in order."""
        transport.write(encode_opening(self._token, self.name))
        self._transport = transport
        self._outbox.attach(transport)
        backlog, self._backlog = self._backlog, []
        for message, seq in backlog:
            if seq is not None:
                future = self._queued.pop(seq, None)
                if future is None or future.done():
                    continue  # expired while waiting
                self._inflight[seq] = future
            self._outbox.put(message)

    def _fail_backlog(self, detail: str) -> None:
        dropped = len(self._backlog)
        self._backlog = []
        queued, self._queued = self._queued, {}
        for future in queued.values():
            if not future.done():
                future.set_exception(self._unavailable(detail))
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

    def _on_lost(self) -> None:
        self._transport = None
        self._outbox.attach(None)
        inflight, self._inflight = self._inflight, {}
        for future in inflight.values():
            if not future.done():
                future.set_exception(self._unavailable("connection lost"))
        if self._backlog and self._connecting is None and not self._closed:
            self._connecting = self._loop.create_task(self._connect())

    async def close(self) -> None:
        """Close the stream; later calls fail as unavailable."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None:
            self._outbox.flush()
            self._transport.close()
        self._fail_backlog("link closed")


class _Replies(asyncio.Protocol):
    """The stream of a link, as its reading side sees it: replies to the link's calls."""

    def __init__(self, link: Link[Any]) -> None:
        self._link = link
        self._reader = MessageReader()

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
        self._link._on_lost()
