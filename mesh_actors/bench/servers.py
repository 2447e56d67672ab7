"""The servers under test: started as pinned subprocesses that announce their port on stdout.

Why subprocesses: the server's CPU must be read from the kernel apart from the generator's, on its
own core, and a Ray server is a tree of processes anyway. Every target (``mesh-actors serve`` and
the baseline servers) binds 127.0.0.1 port 0 and prints ``listening on ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO

from .pinning import pinned_argv
from .procstat import process_tree, start_time

HOST = "127.0.0.1"
"""The only address the harness ever talks to."""

APP = "mesh_actors.bench.app:server"
"""The mesh-actors app under test (a module of this package, so it works from a pip install)."""

STARTUP_TIMEOUT_S = {"inline": 30.0, "ray": 180.0, "baseline": 30.0}
"""A local Ray takes ~5 s to start on two free cores, longer squeezed onto one."""
STOP_TIMEOUT_S = 15.0

READY_LINE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
"""What every target prints on stdout once it accepts connections."""


def mesh_command(
    runtime: str,
    gateways: int,
    extra: Sequence[str] = (),
    shard_hosts: int | None = None,
    colocate: bool = False,
) -> list[str]:
    """``python -m mesh_actors serve <bench app> --runtime R --port 0`` (+ ``--gateways`` and
    ``--shard-hosts`` or ``--colocate`` on Ray)."""
    command = [sys.executable, "-m", "mesh_actors", "serve", APP, "--runtime", runtime, "--port", "0"]
    if runtime == "ray":
        command += ["--gateways", str(gateways)]
        if colocate:
            command += ["--colocate"]
        elif shard_hosts is not None:
            command += ["--shard-hosts", str(shard_hosts)]
    return [*command, *extra]


def baseline_command(library: str) -> list[str]:
    """The framework-free baseline server on ``library`` (``websockets`` or ``picows``), or the
    original Node server (``node``, see :mod:`.node_reference`)."""
    if library == "node":
        return [sys.executable, "-m", "mesh_actors.bench.node_reference", "--port", "0"]
    return [sys.executable, "-m", "mesh_actors.bench.baseline", "--library", library, "--port", "0"]


def server_environment(extra: Sequence[str] = ()) -> dict[str, str]:
    """The servers' environment: ours minus ``MESH_REDIS_URL``, plus ``extra`` ``NAME=VALUE`` items.

    ``MESH_REDIS_URL`` is dropped so the server starts its embedded redis-server as a child: that
    Redis is then pinned with the server and its CPU is counted in "server CPU per op".
    """
    env = {name: value for name, value in os.environ.items() if name != "MESH_REDIS_URL"}
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


@dataclass
class ServerUnderTest:
    """A started target: its process, port and the banner it printed."""

    target: str
    process: asyncio.subprocess.Process
    port: int
    banner: str
    stderr_log: IO[bytes]

    @property
    def uri(self) -> str:
        """WebSocket URI of the server."""
        return f"ws://{HOST}:{self.port}/"

    @property
    def pid(self) -> int:
        """Pid of the root of the server's process tree."""
        return self.process.pid

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the server wrote on stderr (for failure messages)."""
        self.stderr_log.seek(0)
        return self.stderr_log.read().decode(errors="replace")[-limit:]


class ServerStartError(RuntimeError):
    """A target exited or stayed silent instead of printing its ready line."""


@contextlib.asynccontextmanager
async def running_server(
    target: str,
    command: Sequence[str],
    cpu: int | None,
    startup_timeout: float,
    env: dict[str, str] | None = None,
) -> AsyncIterator[ServerUnderTest]:
    """Start ``command`` pinned to ``cpu`` (``taskset -c``), wait for its ready line, stop it after.

    Stopping is SIGTERM (every target shuts down cleanly on it), then SIGKILL after a timeout; any
    descendant still alive afterwards (it should die with its parent) is sent SIGTERM by pid. The
    descendants are those seen at start; a Ray server's workers are among them.
    """
    with tempfile.TemporaryFile() as stderr_log:
        process = await asyncio.create_subprocess_exec(
            *pinned_argv(list(command), cpu),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_log,
            env=env,
        )
        assert process.stdout is not None
        drain: asyncio.Task[None] | None = None
        descendants: list[tuple[int, str]] = []
        try:
            try:
                banner, port = await asyncio.wait_for(read_ready_line(process.stdout), startup_timeout)
            except TimeoutError:
                banner, port = f"no ready line within {startup_timeout:g} s", 0
            server = ServerUnderTest(target, process, port, banner, stderr_log)
            if port == 0:
                tail = server.stderr_tail()
                raise ServerStartError(f"{target} did not become ready ({banner}); stderr:\n{tail}")
            drain = asyncio.create_task(discard(process.stdout))
            descendants = [(pid, start_time(pid)) for pid in process_tree(process.pid)[1:]]
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            for pid, started in descendants:
                if start_time(pid) == started:  # still that very process, not a reused pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain


async def read_ready_line(stdout: asyncio.StreamReader) -> tuple[str, int]:
    """Read stdout until the ready line: ``(line, port)``, or ``(reason, 0)`` if the process exits."""
    while line := await stdout.readline():
        text = line.decode(errors="replace").strip()
        match = READY_LINE.search(text)
        if match:
            return text, int(match.group(1))
    return "exited before its ready line", 0


async def discard(stream: asyncio.StreamReader) -> None:
    """Keep reading a pipe so the server can never block on a full stdout."""
    while await stream.read(65536):
        pass
