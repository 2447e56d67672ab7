"""The serving end of data-plane links: runs the methods that links name on local actors.

A :class:`LinkServer` exposes one actor object, or several hosted by one process (a Ray worker
hosting several shards). Each accepted stream first proves it belongs to the deployment (the
shared token) and names the actor it wants (:mod:`.codec`); then every ``CALL`` message runs a
public method and gets a ``REPLY``, every ``TELL`` message runs one without a reply.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from collections.abc import Mapping
from typing import Any, cast

from ...gateway.eager import step_eagerly
from ...protocol.errors import CodeError, ErrorCode
from .codec import CALL, REPLY, TELL, CodecError, MessageReader, encode, take_opening
from .outbox import Outbox

__all__ = ["LinkServer"]

logger = logging.getLogger(__name__)

_NO_KWARGS: Mapping[str, Any] = {}


class LinkServer:
    """Serves the public methods of ``target`` to authenticated links.

    ``target`` is one actor object (every link gets it, whatever name it asks for), or a mapping
    of actor names to objects hosted by this process (a link gets the one it names; a link naming
    another is refused). The mapping may grow while serving (a gateway started after the shards).
    """

    def __init__(self, target: Any, token: bytes, *, name: str = "") -> None:
        self.targets: Mapping[str, Any] | None = target if isinstance(target, Mapping) else None
        self.target = None if self.targets is not None else target
        self.name = name or type(target).__name__
        self._token = token
        self._server: asyncio.Server | None = None
        self._streams: set[_Stream] = set()

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port``; returns the bound address."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Stream(self), host, port)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        """Stop listening and drop every link."""
        if self._server is not None:
            self._server.close()
        for stream in list(self._streams):
            stream.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def _authentic(self, token: bytes) -> bool:
        return hmac.compare_digest(token, self._token)

    def _target_named(self, name: str) -> Any:
        if self.targets is None:
            return self.target
        return self.targets.get(name)


class _Stream(asyncio.Protocol):
    """One accepted link: its opening, then the messages it carries."""

    def __init__(self, server: LinkServer) -> None:
        self._server = server
        self._reader = MessageReader()
        self._pending = bytearray()
        self._authenticated = False
        self._target: Any = None
        """The actor this link asked for (set once the opening was read)."""
        self._transport: asyncio.Transport | None = None
        self._outbox = Outbox(asyncio.get_running_loop())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        self._outbox.attach(self._transport)
        self._server._streams.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._streams.discard(self)
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
        except Exception:  # CodecError, or bytes that do not unpickle
            logger.warning("link to %s: malformed message, closing", self._server.name, exc_info=True)
            self.abort()
            return
        for message in messages:
            self._dispatch(message)

    def _open(self, data: bytes) -> bytes:
        """Consume the token and the actor name; returns the bytes after them."""
        self._pending += data
        name = self._server.name
        try:
            if not self._authenticated:
                token = take_opening(self._pending)
                if token is None:
                    return b""
                if not self._server._authentic(token):
                    logger.warning("link to %s: wrong token, closing", name)
                    self.abort()
                    return b""
                self._authenticated = True
            wanted = take_opening(self._pending)
        except CodecError as error:
            logger.warning("link to %s: %s, closing", name, error)
            self.abort()
            return b""
        if wanted is None:
            return b""
        self._target = self._server._target_named(wanted.decode(errors="replace"))
        if self._target is None:
            logger.warning("link to %s: no actor %r here, closing", name, wanted)
            self.abort()
            return b""
        rest, self._pending = bytes(self._pending), bytearray()
        return rest

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == CALL:
            self._invoke(message[1], message[2], message[3], message[4] if len(message) > 4 else _NO_KWARGS)
        elif kind == TELL:
            self._invoke(None, message[1], message[2], message[3] if len(message) > 3 else _NO_KWARGS)

    def _invoke(self, seq: int | None, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        try:
            if method.startswith("_"):
                raise CodeError(f"method {method!r} is not exposed", ErrorCode.INVALID, "LinkError")
            result = getattr(self._target, method)(*args, **kwargs)
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
            self._finish(seq, method, False, CodeError("cancelled", ErrorCode.CANCELLED, "CancelledError"))
        elif (error := task.exception()) is not None:
            self._finish(seq, method, False, error)
        else:
            self._finish(seq, method, True, task.result())

    def _finish(self, seq: int | None, method: str, ok: bool, value: Any) -> None:
        if not ok and not isinstance(value, CodeError):
            if seq is None:
                logger.error("%s.%s failed", self._server.name, method, exc_info=value)
            code = getattr(value, "code", None) or ErrorCode.SERVER
            value = CodeError(str(value), code, type(value).__name__)
        if seq is None:
            if not ok:
                logger.debug("%s.%s (tell) failed: %s", self._server.name, method, value)
            return
        try:
            reply = encode((REPLY, seq, ok, value))
        except Exception as error:  # an unpicklable result
            unsendable = CodeError(f"unsendable result: {error}", ErrorCode.SERVER, "LinkError")
            reply = encode((REPLY, seq, False, unsendable))
        self._outbox.put(reply)
