"""Output backpressure: what one connection makes the server hold is bounded by the send buffer limit.

The attack: set one's own metadata to 512 KiB, then send 200 ``get-my-connection-metadata`` in one
TCP write and never read. Those commands finish without waiting, so the in-flight limit does not
count them; the gateway must stop starting them once the connection's pending output passes half of
``max_send_buffer_bytes`` (and start them again, in order, when the output has drained).

The memory test runs the server in a subprocess, so the peak RSS it reads (``VmHWM``) is the
server's alone, and talks to it over plain blocking sockets, so the attacker really never reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import client_frame, raw_client

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0
MAX_SEND_BUFFER = 4 << 20
"""The server's ``max_send_buffer_bytes`` in the subprocess test (the default, set explicitly)."""

APP = """
from mesh_actors import MeshServer

server = MeshServer()
server.expose_command("echo", lambda ctx: ctx.payload)
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


# -- a server in its own process -----------------------------------------------------------------


class ServerProcess:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def status_bytes(self, field: str) -> int:
        """A ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def reset_peak(self) -> None:
        """Make ``VmHWM`` start again from the current RSS (Linux >= 4.0)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@pytest.fixture
def server_process(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[ServerProcess]:
    """``mesh-actors serve`` of a tiny app, on a free port, with this test's key prefix."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "MESH_KEY_PREFIX": key_prefix,
        "MESH_MAX_SEND_BUFFER_BYTES": str(MAX_SEND_BUFFER),
        # A client that stops reading stops answering pings too: it is dropped after about 2-3 s.
        "MESH_PING_INTERVAL": "1",
        "MESH_MAX_MISSED_PONGS": "1",
        "MESH_CLOSE_TIMEOUT": "0.5",
    }
    command = [sys.executable, "-m", "mesh_actors", "serve", f"{app}:server", "--port", "0"]
    command += ["--redis-url", redis_url, "--log-level", "warning"]
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        port = None
        for line in process.stdout:  # ends if the server exits before it is ready
            if "listening on ws://" in line:
                port = int(line.split("ws://", 1)[1].split()[0].rsplit(":", 1)[1])
                break
        assert port is not None, (tmp_path / "server.log").read_text()
        yield ServerProcess(process, port)
    finally:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- a WebSocket client on a plain socket ----------------------------------------------------------


class WireSocket:
    """A blocking WebSocket client that writes exactly what it is told and reads only when asked."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buffer = bytearray(rest)
        self.connection_id: str = self.next_json(lambda f: f.get("command") == "mesh/assign-id")["payload"]

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def next_message(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, never fragmented): ``(opcode, payload)``."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(length)

    def next_json(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next message matching ``predicate``; pings on the way are answered."""
        while True:
            opcode, data = self.next_message()
            if opcode == 0x8:
                raise ConnectionError(f"closed by the server: {data!r}")
            if opcode != 0x1:
                continue
            frame = orjson.loads(data)
            if frame.get("command") == "ping" and "id" not in frame:
                self.send({"command": "pong"})
            elif predicate(frame):
                return frame

    def send(self, frame: Any) -> None:
        self.sock.sendall(client_frame(orjson.dumps(frame)))

    def call(self, request_id: int, command: str, payload: Any = None) -> Any:
        self.send({"id": request_id, "command": command, "payload": {} if payload is None else payload})
        return self.next_json(lambda f: f.get("id") == request_id).get("payload")

    def close(self) -> None:
        self.sock.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- the tests -------------------------------------------------------------------------------------


def test_pipelined_large_answers_to_a_client_that_never_reads_stay_bounded(
    server_process: ServerProcess, redis_url: str, key_prefix: str
) -> None:
    metadata = "m" * (512 * 1024)
    attacker = WireSocket(server_process.port)
    try:
        stored = attacker.call(1, "mesh/set-my-connection-metadata", {"metadata": metadata})
        assert stored == {"success": True}
        # One answer read in full first: what it costs to build one is not what this test measures.
        assert attacker.call(2, "mesh/get-my-connection-metadata") == {"metadata": metadata}
        server_process.reset_peak()
        before = server_process.status_bytes("VmHWM")

        attack = b"".join(
            client_frame(orjson.dumps({"id": 100 + i, "command": "mesh/get-my-connection-metadata"}))
            for i in range(200)
        )
        attacker.sock.sendall(attack)  # one write, and from now on it never reads

        # The server has taken the attack in (it was in its socket before this client connected, and
        # the eager commands run inside that read) when a second client gets its echo back.
        probe = WireSocket(server_process.port)
        try:
            assert probe.call(1, "echo", "still here") == "still here"
        finally:
            probe.close()
        growth = server_process.status_bytes("VmHWM") - before
        print(f"peak RSS growth during the attack: {growth / 2**20:.1f} MiB")
        assert growth < 2 * MAX_SEND_BUFFER, f"peak RSS grew by {growth / 2**20:.1f} MiB"

        # Not held forever either: it answers no pings, so the ping timeout drops it.
        registry = sync_redis.Redis.from_url(redis_url)
        try:
            wait_until(
                lambda: not registry.hexists(f"{key_prefix}connections", attacker.connection_id),
                30,
                "the attacker to be dropped",
            )
        finally:
            registry.close()
    finally:
        attacker.close()
    healthy = WireSocket(server_process.port)
    try:
        assert healthy.call(1, "echo", {"after": True}) == {"after": True}
    finally:
        healthy.close()


def setup_commands(server: MeshServer) -> None:
    server.expose_command("echo", lambda ctx: ctx.payload)

    @server.command("later")
    async def later(ctx: Any) -> Any:
        await asyncio.sleep(0)  # a command that waits: it runs as a task
        return ctx.payload


async def test_a_reading_client_gets_every_large_answer_in_order(make_server: ServerFactory) -> None:
    """Pausing and resuming loses nothing and reorders nothing (eager answers keep their order)."""
    server = await make_server(setup=setup_commands, max_send_buffer_bytes=256 * 1024)
    gateway = server.local_gateway
    assert gateway is not None
    metadata = {"blob": "b" * (100 * 1024)}
    count = 300
    async with raw_client(url_of(server), max_size=None) as c:
        assert await c.call("mesh/set-my-connection-metadata", {"metadata": metadata}) == {"success": True}
        frames = []
        for i in range(count):
            if i % 3 == 2:
                frames.append({"id": i, "command": "echo", "payload": i})
            else:
                frames.append({"id": i, "command": "mesh/get-my-connection-metadata", "payload": {}})
        c.ws.transport.write(b"".join(client_frame(orjson.dumps(frame)) for frame in frames))
        got = [await c.wait_for(lambda f: "id" in f, timeout=30) for _ in range(count)]
        assert [frame["id"] for frame in got] == list(range(count))
        for frame in got:
            expected = frame["id"] if frame["id"] % 3 == 2 else {"metadata": metadata}
            assert frame["payload"] == expected
        assert gateway.counters.get("output-backpressure", 0) > 0  # the pause really happened

        # With commands that wait mixed in, every answer still arrives exactly once.
        mixed = [
            {"id": 1000 + i, "command": "later" if i % 4 == 0 else "mesh/get-my-connection-metadata"}
            for i in range(200)
        ]
        c.ws.transport.write(b"".join(client_frame(orjson.dumps(frame)) for frame in mixed))
        ids = [(await c.wait_for(lambda f: "id" in f, timeout=30))["id"] for _ in range(len(mixed))]
        assert sorted(ids) == [frame["id"] for frame in mixed]
        eager = [i for i in ids if (i - 1000) % 4 != 0]
        assert eager == sorted(eager)
        assert await c.call("echo", "done") == "done"
    async with raw_client(url_of(server)) as other:
        assert await other.call("echo", "fine") == "fine"


async def test_commands_after_the_server_closed_a_connection_do_not_start(make_server: ServerFactory) -> None:
    ran: list[int] = []

    def setup(server: MeshServer) -> None:
        @server.command("bye")
        async def bye(ctx: Any) -> None:
            await ctx.connection.close(1000, "bye")

        @server.command("count")
        async def count(ctx: Any) -> None:
            ran.append(ctx.payload)

    server = await make_server(setup=setup)
    async with raw_client(url_of(server)) as c:
        data = client_frame(orjson.dumps({"id": 1, "command": "bye"}))
        for i in range(3):
            data += client_frame(orjson.dumps({"id": 2 + i, "command": "count", "payload": i}))
        c.ws.transport.write(data)  # all in one read: the counts arrive while it is closing
        assert await c.closed() == 1000
    async with raw_client(url_of(server)) as other:
        await other.call("count", 99)
    assert ran == [99]


@pytest.mark.parametrize("path", ["fast", "websockets"])
async def test_reading_stays_paused_while_the_output_is_full(make_server: ServerFactory, path: str) -> None:
    """Requests sent after the output filled stay unread in the socket, on both parsing paths
    (after a fragmented message websockets parses, and its message queue resumes reading on its
    own); when the client reads, every answer arrives, in order."""
    server = await make_server(setup=setup_commands, max_send_buffer_bytes=256 * 1024)
    gateway = server.local_gateway
    assert gateway is not None
    metadata = "m" * (100 * 1024)
    client = await asyncio.to_thread(WireSocket, server.port)
    try:
        set_metadata = "mesh/set-my-connection-metadata"
        stored = await asyncio.to_thread(client.call, 1, set_metadata, {"metadata": metadata})
        assert stored == {"success": True}
        connection = gateway.connections[client.connection_id]
        first = b""
        if path == "websockets":  # a fragmented message: websockets parses the rest of the connection
            body = orjson.dumps({"id": 2, "command": "echo", "payload": "fragmented"})
            first = client_frame(body[:10], fin=False) + client_frame(body[10:], 0x0)
        get = "mesh/get-my-connection-metadata"
        burst = b"".join(client_frame(orjson.dumps({"id": 100 + i, "command": get})) for i in range(50))
        await asyncio.to_thread(client.sock.sendall, first + burst)
        deadline = time.monotonic() + WAIT
        while not connection.waiting:  # the output limit stopped the burst
            assert time.monotonic() < deadline, "the output limit never held a command back"
            await asyncio.sleep(0.01)
        assert connection.websocket.splits_frames is (path == "fast")

        late = b"".join(client_frame(orjson.dumps({"id": 1000 + i, "command": get})) for i in range(200))
        await asyncio.to_thread(client.sock.sendall, late)
        async with raw_client(url_of(server)) as probe:  # a round trip: the loop had its chances to read
            assert await probe.call("echo", "probe") == "probe"
        assert not any(request.id >= 1000 for request in connection.waiting)

        expected = ([2] if path == "websockets" else []) + list(range(100, 150)) + list(range(1000, 1200))

        def read_all() -> list[int]:
            return [client.next_json(lambda f: "id" in f)["id"] for _ in expected]

        assert await asyncio.to_thread(read_all) == expected
        assert not connection.waiting
    finally:
        client.close()
