"""A raw WebSocket peer for frame-level tests: sends exact frames, reads exact frames.

Deliberately not our MeshClient: these tests check the server's bytes against the spec, so the
test side must not hide anything (no automatic pong, no parsing beyond JSON).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.speedups import apply_mask

__all__ = ["HEARTBEAT", "RawClient", "client_frame", "raw_client"]

HEARTBEAT = frozenset({"ping", "latency", "latency:request"})
WAIT = 5.0
_AUTO = object()


class RawClient:
    """One connection; frames are kept in arrival order and consumed by the ``expect`` helpers."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.ws = websocket
        self.frames: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.raw: list[str | bytes] = []
        self._arrived = asyncio.Condition()
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self.connection_id: str | None = None
        self.close_code: int | None = None

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.raw.append(message)
                frame = orjson.loads(message)
                async with self._arrived:
                    if isinstance(frame, dict) and "id" not in frame and frame.get("command") in HEARTBEAT:
                        self.heartbeats.append(frame)
                    else:
                        self.frames.append(frame)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass  # the close code is what tests look at
        finally:
            self.close_code = self.ws.close_code
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, heartbeat: bool = False, timeout: float = WAIT
    ) -> dict[str, Any]:
        """Remove and return the first frame matching ``predicate``, waiting for it to arrive."""
        pool = self.heartbeats if heartbeat else self.frames

        def find() -> dict[str, Any] | None:
            for index, frame in enumerate(pool):
                if predicate(frame):
                    return pool.pop(index)
            return None

        async def wait() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    found = find()
                    if found is not None:
                        return found
                    if self._reader.done():
                        raise ConnectionError(f"connection closed (code {self.close_code}) while waiting")
                    await self._arrived.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def assign_ids(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The two identity frames; sets :attr:`connection_id`."""
        first = await self.wait_for(lambda f: f.get("command") == "mesh/assign-id")
        second = await self.wait_for(lambda f: f.get("command") == "rt/assign-id")
        self.connection_id = first["payload"]
        return first, second

    async def send(self, frame: Any) -> None:
        """Send a JSON value (or a raw str/bytes message) as is."""
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else orjson.dumps(frame).decode())

    async def request(
        self,
        command: Any,
        payload: Any = None,
        *,
        request_id: Any = _AUTO,
        with_payload: bool = True,
        timeout: float = WAIT,
    ) -> dict[str, Any]:
        """Send a request and return the whole response frame (matched by id)."""
        if request_id is _AUTO:
            request_id = next(self._ids)
        frame: dict[str, Any] = {"id": request_id, "command": command}
        if with_payload:
            frame["payload"] = {} if payload is None else payload
        await self.send(frame)
        return await self.wait_for(lambda f: "id" in f and f["id"] == request_id, timeout=timeout)

    async def call(self, command: Any, payload: Any = None, *, timeout: float = WAIT) -> Any:
        """Send a request and return just the response payload."""
        return (await self.request(command, payload, timeout=timeout)).get("payload")

    async def push(self, command: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next push (frame without id) named ``command``."""
        return await self.wait_for(lambda f: "id" not in f and f.get("command") == command, timeout=timeout)

    async def closed(self, timeout: float = WAIT) -> int | None:
        """Wait until the server closed the connection; returns the close code."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


class raw_client:
    """Connect, wait for the assign-id frames, and close on exit."""

    def __init__(self, url: str, *, wait_ready: bool = True, **connect_options: Any) -> None:
        self.url = url
        self.wait_ready = wait_ready
        self.options = connect_options
        self.client: RawClient | None = None

    async def __aenter__(self) -> RawClient:
        websocket = await connect(self.url, ping_interval=None, **self.options)
        self.client = RawClient(websocket)
        if self.wait_ready:
            await self.client.assign_ids()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.close()


def client_frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, masked: bool = True) -> bytes:
    """One client-to-server frame, masked as RFC 6455 requires (unless ``masked`` is False)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + apply_mask(payload, mask)
