"""The ``mesh-actors serve`` command: real processes, clear errors, clean shutdown, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.wire import raw_client

ROOT = Path(__file__).resolve().parent.parent
CHAT = str(ROOT / "examples" / "chat.py") + ":server"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh_actors", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``process``, or "" if none came within ``timeout`` seconds."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


@contextmanager
def serving(
    *args: str, env: dict[str, str] | None = None, ready_timeout: float = 30
) -> Iterator[tuple[subprocess.Popen[str], int, float]]:
    """Start ``mesh-actors serve``; yields the process, its port and the seconds until it was ready."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mesh_actors", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = _read_line(process, ready_timeout)
        elapsed = time.perf_counter() - started
        assert line.startswith(f"mesh-actors listening on ws://127.0.0.1:{port}"), line + (
            process.stderr.read() if process.stderr else ""
        )
        yield process, port, elapsed
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def descendant_titles(pid: int) -> list[str]:
    """Command lines of every process below ``pid`` (Ray names its workers ``ray::<Class>``)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for line in table.splitlines():
        child, parent, args = line.split(None, 2) if len(line.split(None, 2)) == 3 else (*line.split(), "")
        children.setdefault(int(parent), []).append((int(child), args))
    titles, stack = [], [pid]
    while stack:
        for child, args in children.get(stack.pop(), []):
            titles.append(args)
            stack.append(child)
    return titles


def env_with(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update(values)
    return env


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples/nope.py:server", "no such file: examples/nope.py"),
        ("examples/chat.py:nothing", "examples/chat.py has no attribute 'nothing'"),
        ("examples/chat.py:echo", "examples/chat.py:echo is a function, not a MeshServer"),
        ("no_such_module:server", "cannot import module 'no_such_module'"),
        ("examples.chat", "expected MODULE:ATTR"),
    ],
)
def test_bad_app_paths_are_usage_errors(target: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mesh_actors", "serve", target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_port_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", CHAT, "--port", str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_reported() -> None:
    dead = free_port()  # nothing listens there
    result = run_cli("serve", CHAT, "--redis-url", f"redis://127.0.0.1:{dead}/0", "--port", str(free_port()))
    assert result.returncode == 1
    assert f"Cannot reach Redis at redis://127.0.0.1:{dead}/0" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_option_is_reported() -> None:
    result = run_cli("serve", CHAT, "--port", "70000")
    assert result.returncode == 2
    assert "invalid option" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-hosts", "2"], "--address, --gateways, --shard-hosts and --colocate need --runtime ray"),
        (["--gateways", "2"], "--address, --gateways, --shard-hosts and --colocate need --runtime ray"),
        (
            ["--runtime", "ray", "--room-shards", "2", "--connection-shards", "1", "--shard-hosts", "4"],
            "--shard-hosts 4 is more than the 3 shards there are to host",
        ),
    ],
)
def test_ray_options_are_checked_before_anything_starts(args: list[str], message: str) -> None:
    result = run_cli("serve", CHAT, *args)
    if "--runtime" in args and "needs Ray" in result.stderr:
        pytest.skip("needs the ray extra")  # the ray check comes first
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_embedded_redis_answers_and_stops_cleanly() -> None:
    with serving(CHAT, env=env_with()) as (process, port, elapsed):
        print(f"mesh-actors serve (embedded Redis) ready after {elapsed:.2f}s")
        assert elapsed < 10  # a sanity bound, not a benchmark: the measured value is printed above

        async def talk() -> Any:
            async with raw_client(f"ws://127.0.0.1:{port}") as client:
                welcome = await client.push("welcome")
                echoed = await client.call("echo", {"hi": 1})
                status = await client.call("set-status", {"status": "busy"})
                return welcome, echoed, status, client.connection_id

        welcome, echoed, status, cid = asyncio.run(talk())
        assert welcome["payload"] == {"id": cid}
        assert echoed == {"hi": 1}
        assert status == {"status": "busy"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_a_killed_server_leaves_no_ghosts_for_the_next_one(redis_url: str, key_prefix: str) -> None:
    env = env_with(MESH_REDIS_URL=redis_url, MESH_KEY_PREFIX=key_prefix)

    async def join(port: int) -> str:
        async with raw_client(f"ws://127.0.0.1:{port}") as client:
            await client.call("mesh/join-room", {"roomName": "lobby"})
            await client.call("update-room-topic", {"roomName": "lobby", "topic": "kept"})
            process.kill()  # SIGKILL while the client is connected: no cleanup runs
            await client.closed()
            return str(client.connection_id)

    with serving(CHAT, env=env) as (process, port, _):
        dead = asyncio.run(join(port))
        process.wait(10)

    async def inspect(port: int) -> Any:
        async with raw_client(f"ws://127.0.0.1:{port}") as client:
            joined = await client.call("mesh/join-room", {"roomName": "lobby"})
            meta = await client.call("mesh/get-room-metadata", {"roomName": "lobby"})
            ghost = await client.call("mesh/get-connection-metadata", {"connectionId": dead})
            return joined, meta, ghost, client.connection_id

    with serving(CHAT, env=env) as (_, port, _):
        joined, meta, ghost, cid = asyncio.run(inspect(port))
    assert joined == {"success": True, "present": [{"id": cid, "metadata": None}]}
    assert meta == {"metadata": {"topic": "kept"}}
    assert ghost == {"metadata": None}


def test_example_chat_client_talks_to_the_example_server() -> None:
    with serving(CHAT, env=env_with()) as (_, port, _):
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "chat_client.py"), f"ws://127.0.0.1:{port}", "grace"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("connected as ")
    assert "echo: {'hello': 'world'}" in lines
    assert "status: {'name': 'grace', 'status': 'chatting'}" in lines
    assert "joined lobby with 1 member(s)" in lines
    assert "room metadata: {'topic': 'python'}" in lines
    assert lines[-1] == "grace: hello from grace"


@pytest.mark.ray
def test_serve_on_ray_drains_gateways_on_sigterm(redis_url: str, key_prefix: str) -> None:
    pytest.importorskip("ray", reason="needs the ray extra")
    env = env_with(MESH_REDIS_URL=redis_url, MESH_KEY_PREFIX=key_prefix)
    with serving(CHAT, "--runtime", "ray", "--gateways", "2", env=env, ready_timeout=120) as (
        process,
        port,
        elapsed,
    ):
        print(f"mesh-actors serve --runtime ray (local Ray, 2 gateways) ready after {elapsed:.2f}s")

        titles = descendant_titles(process.pid)
        # 2 room + 2 connection shards (the defaults), one room/connection pair per process
        assert sum(title.startswith("ray::ShardHost") for title in titles) == 2
        assert sum(title.startswith("ray::GatewayHost") for title in titles) == 2

        async def talk() -> tuple[Any, int | None]:
            async with raw_client(f"ws://127.0.0.1:{port}") as client:
                echoed = await client.call("echo", {"on": "ray"})
                process.send_signal(signal.SIGTERM)
                return echoed, await client.closed(timeout=60)

        echoed, code = asyncio.run(talk())
        assert echoed == {"on": "ray"}
        assert code == 1001  # drained: "going away", reconnect elsewhere
        assert process.wait(60) == 0
