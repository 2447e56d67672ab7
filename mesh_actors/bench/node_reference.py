"""The original Node server (``@prsm/realtime``'s ``RealtimeServer``) as a benchmark target.

Why: the issue's targets were set against the Node reference measured on "this machine", and
machines of the same kind differ by 3x in speed from one day to the next. Measuring the reference
in the same run as mesh-actors removes that. It needs a checkout (the pinned npm packages of
``tests/interop/js``, installed with ``npm ci`` there) and Node.js 20+.

This launcher is the target's root process: it starts an embedded redis-server and the reference
server as its children, so both are pinned with it and counted in its CPU, as mesh-actors' own
embedded Redis is. It prints the harness's ready line once the reference accepts connections and
stops both on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ..store.redis.embedded import EmbeddedRedis

__all__ = ["main", "reference_dir"]

DEFAULT_DIR = Path("tests/interop/js")
"""Where the reference server and its npm packages live in a checkout (relative to the cwd)."""


def reference_dir() -> Path:
    """The folder with ``reference_server.mjs`` and its ``node_modules`` (``MESH_NODE_REFERENCE``)."""
    return Path(os.environ.get("MESH_NODE_REFERENCE", DEFAULT_DIR))


def problem() -> str | None:
    """Why the Node reference cannot run here, or None."""
    folder = reference_dir()
    if shutil.which("node") is None:
        return "--baseline-library node needs Node.js 20+ on PATH"
    if not (folder / "reference_server.mjs").is_file():
        return (
            f"--baseline-library node needs a checkout: no {folder}/reference_server.mjs "
            "(run from the repository root or set MESH_NODE_REFERENCE)"
        )
    if not (folder / "node_modules" / "@prsm" / "realtime").is_dir():
        return f"--baseline-library node needs the npm packages: run 'npm ci' in {folder}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    reason = problem()
    if reason:
        raise SystemExit(reason)
    folder = reference_dir()
    redis = EmbeddedRedis()
    url = redis.start()
    node = subprocess.Popen(
        ["node", str(folder / "reference_server.mjs"), str(args.port)],
        stdout=subprocess.PIPE,
        env={**os.environ, "REDIS_URL": url},
        text=True,
    )

    def stop(*_: object) -> None:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
        redis.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    assert node.stdout is not None
    line = node.stdout.readline()
    if not line.startswith("READY "):
        redis.stop()
        raise SystemExit(f"the reference server did not start: {line.strip()!r}")
    version = (folder / "node_modules" / "@prsm" / "realtime" / "package.json").read_text()
    release = version.split('"version"', 1)[1].split('"')[1]
    print(f"@prsm/realtime {release} listening on ws://127.0.0.1:{line.split()[1]}", flush=True)
    node.wait()
    redis.stop()
    sys.exit(node.returncode)


if __name__ == "__main__":
    main()
