"""Helpers for interoperability tests that run Node.js code (no tests in here; POSIX only).

The Node side lives in ``tests/interop/js``:

* ``reference_server.mjs`` -- the original ``RealtimeServer`` of ``@prsm/realtime`` 1.8.1,
  bound to 127.0.0.1, with the test commands ``echo``, ``throws``, ``broadcast-room`` and
  ``set-room-meta``;
* ``client_scenario.mjs`` -- a scripted scenario with two stock ``RealtimeClient`` instances
  that prints one JSON object describing everything it observed.

Typical use from a test::

    reason = node_available()
    if reason is not None:
        pytest.skip(reason)
    with start_reference_server("redis://127.0.0.1:6379/9") as (_process, port):
        observed = run_client_scenario(f"ws://127.0.0.1:{port}")
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "JS_DIR",
    "MIN_NODE_MAJOR",
    "NodeHelperError",
    "ensure_node_modules",
    "node_available",
    "run_client_scenario",
    "start_reference_server",
]

JS_DIR: Path = Path(__file__).resolve().parent / "js"
"""Folder holding ``package.json``, ``package-lock.json`` and the ``.mjs`` scripts."""

MIN_NODE_MAJOR = 20
"""Oldest Node.js major version the scripts (and ``@prsm/realtime`` 1.8.1) support."""

NPM_CI_TIMEOUT_S = 600.0
_READY_RE = re.compile(rb"^READY (\d+)\s*$")


class NodeHelperError(RuntimeError):
    """A Node.js step (install, server start, scenario run) failed; the message has its output."""


@functools.cache
def node_available() -> str | None:
    """Tell whether Node.js tooling usable by the interop tests is present.

    Returns:
        ``None`` when ``node`` (>= :data:`MIN_NODE_MAJOR`) and ``npm`` are on ``PATH``,
        otherwise a human-readable reason suitable for ``pytest.skip``.
    """
    node = shutil.which("node")
    if node is None:
        return "node is not installed (not found on PATH)"
    if shutil.which("npm") is None:
        return "npm is not installed (not found on PATH)"
    try:
        proc = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run `node --version`: {exc}"
    version = proc.stdout.strip()
    match = re.match(r"^v(\d+)\.", version)
    if proc.returncode != 0 or match is None:
        return f"could not determine the Node.js version (`node --version` printed {version!r})"
    if int(match.group(1)) < MIN_NODE_MAJOR:
        return f"Node.js {version} is too old: the interop tests need Node >= {MIN_NODE_MAJOR}"
    return None


def _install_is_fresh() -> bool:
    """True when ``node_modules`` exists and was installed after the manifest/lock last changed."""
    # npm writes this "hidden lockfile" at the end of every successful install.
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    if not marker.is_file():
        return False
    newest_input = max((JS_DIR / name).stat().st_mtime for name in ("package-lock.json", "package.json"))
    return marker.stat().st_mtime >= newest_input


def _lock_file_path() -> Path:
    digest = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mesh-actors-interop-npm-{digest}.lock"


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Exclusive inter-process lock so parallel pytest workers don't run ``npm ci`` at once."""
    with _lock_file_path().open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@functools.cache
def ensure_node_modules() -> Path:
    """Install the Node dependencies of ``tests/interop/js`` if needed (at most once per process).

    Runs ``npm ci --no-audit --no-fund`` when ``node_modules`` is missing or older than
    ``package-lock.json`` / ``package.json``. A file lock serializes concurrent callers
    (e.g. pytest-xdist workers); whoever gets the lock second sees a fresh install and skips.

    Returns:
        The path of the ``node_modules`` folder.

    Raises:
        NodeHelperError: ``npm`` is missing, failed, or timed out (the message includes its output).
    """
    node_modules = JS_DIR / "node_modules"
    with _install_lock():
        if _install_is_fresh():
            return node_modules
        npm = shutil.which("npm")
        if npm is None:
            raise NodeHelperError("npm is not installed (not found on PATH); cannot install tests/interop/js")
        cmd = [npm, "ci", "--no-audit", "--no-fund"]
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            proc = subprocess.run(
                cmd,
                cwd=JS_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeHelperError(
                f"`{' '.join(cmd)}` in {JS_DIR} timed out after {NPM_CI_TIMEOUT_S:.0f} s\n"
                f"--- output ---\n{_text(exc.stdout)}{_text(exc.stderr)}"
            ) from exc
        if proc.returncode != 0:
            raise NodeHelperError(
                f"`{' '.join(cmd)}` in {JS_DIR} failed with exit code {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        if not _install_is_fresh():
            raise NodeHelperError(
                f"`{' '.join(cmd)}` succeeded but {node_modules} does not look installed\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
    return node_modules


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeHelperError("node is not installed (not found on PATH)")
    return node


def _read_stderr(handle: BinaryIO) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read().decode(errors="replace")


def _wait_for_ready(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Read the server's stdout until the ``READY <port>`` line; return the port.

    Raises:
        NodeHelperError: the process exited, printed something else, or the timeout elapsed.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NodeHelperError(f"reference server printed no READY line within {timeout:.0f} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:  # EOF: the process closed stdout, i.e. it is exiting.
            process.wait(timeout=10)
            raise NodeHelperError(f"reference server exited with code {process.returncode} before READY")
        buffer += chunk
    line = buffer.split(b"\n", 1)[0]
    match = _READY_RE.match(line)
    if match is None:
        raise NodeHelperError(f"reference server printed {line!r} instead of 'READY <port>'")
    return int(match.group(1))


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process, then SIGKILL it if it has not exited after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


@contextlib.contextmanager
def start_reference_server(
    redis_url: str, *, port: int = 0, timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run the original ``@prsm/realtime`` server on 127.0.0.1 for the duration of a ``with`` block.

    Args:
        redis_url: Redis it uses, ``redis://host:port/N`` or ``unix:///path/to.sock?db=N``.
            The server keeps all its keys under ``rt:`` in that database; cleaning them up is the
            caller's job. It also runs ``CONFIG SET notify-keyspace-events`` at start.
        port: TCP port to bind on 127.0.0.1; ``0`` picks a free one.
        timeout: Seconds to wait for the ``READY <port>`` line.

    Yields:
        ``(process, port)``: the ``node`` process and the port it listens on
        (connect with ``ws://127.0.0.1:<port>``).

    Raises:
        NodeHelperError: the server did not become ready (the message includes its stderr).
    """
    ensure_node_modules()
    env = {**os.environ, "REDIS_URL": redis_url}
    # Startup gives up a bit before we do, so its own diagnostic reaches stderr.
    env.setdefault("REFERENCE_SERVER_STARTUP_TIMEOUT_MS", str(max(1000, int((timeout - 2) * 1000))))
    with tempfile.TemporaryFile(prefix="reference-server-stderr-") as stderr:
        process = subprocess.Popen(
            [_node(), str(JS_DIR / "reference_server.mjs"), str(port)],
            cwd=JS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            try:
                bound_port = _wait_for_ready(process, timeout)
            except NodeHelperError as exc:
                _stop(process)
                raise NodeHelperError(f"{exc}\n--- server stderr ---\n{_read_stderr(stderr)}") from None
            yield process, bound_port
        finally:
            _stop(process)
            if process.stdout is not None:
                process.stdout.close()


def run_client_scenario(url: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``client_scenario.mjs`` (two stock ``RealtimeClient`` instances) against ``url``.

    Args:
        url: WebSocket URL of the server under test, e.g. ``ws://127.0.0.1:8080``.
        timeout: Seconds before the ``node`` process is killed (the script itself gives up
            after 20 s by default, see ``SCENARIO_TIMEOUT_MS``).

    Returns:
        The JSON object the scenario printed (keys such as ``echo``, ``unknownCommand``,
        ``joinB``, ``myMetadataAfterMerge``, ``roomNewsB``, ``final``; see the script header).

    Raises:
        NodeHelperError: the script failed, timed out, or printed no valid JSON
            (the message includes its stdout and stderr).
    """
    ensure_node_modules()
    cmd = [_node(), str(JS_DIR / "client_scenario.mjs"), url]
    try:
        proc = subprocess.run(
            cmd,
            cwd=JS_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeHelperError(
            f"client scenario against {url} did not finish within {timeout:.0f} s\n"
            f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
        ) from exc
    if proc.returncode != 0:
        raise NodeHelperError(
            f"client scenario against {url} failed with exit code {proc.returncode}\n"
            f"--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise NodeHelperError(
            f"client scenario against {url} printed no JSON object: {exc}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        ) from exc
    if not isinstance(result, dict):
        raise NodeHelperError(f"client scenario printed {type(result).__name__}, expected a JSON object")
    return result
