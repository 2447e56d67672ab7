"""Run the locust suite headless against a Mesh server this script starts, then stop the server.

::

    python loadtests/run_locust.py --users 200 --spawn-rate 20 --run-time 60s --out /tmp/locust
    python loadtests/run_locust.py --runtime ray --users 50 --run-time 30s --tags chat
    python loadtests/run_locust.py --users 20 --run-time 10s ChatUser CommandUser -- --mesh-rooms 4

What it does, all on 127.0.0.1:

1. starts ``python -m mesh_actors serve loadtests/locust_app.py:server --port 0`` (inline runtime
   by default, ``--runtime ray`` for a local Ray deployment) and reads the bound port from its ready
   line ``listening on ws://127.0.0.1:<port>``;
2. runs ``locust -f loadtests/locustfile.py --headless -u N -r R -t T --host ws://127.0.0.1:<port>
   --csv OUT/mesh --html OUT/report.html`` in its own process (gevent monkey-patches that process,
   never this one), echoing its output and keeping a copy in ``OUT/locust.log``;
3. stops the server with SIGINT (a clean drain) and exits with locust's exit code: 0 when no
   request failed and the delivery-completeness summary (``OUT/completeness.json``) lost nothing.

Users, spawn rate and run time are bounded (:data:`MAX_USERS`, :data:`MAX_SPAWN_RATE`,
:data:`MAX_RUN_TIME_S`): one machine runs both the load generator and the server, and more
connections than that mostly measure the generator.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
"""Repository root: the server and locust run from here (paths in their arguments are relative)."""

APP = "loadtests/locust_app.py:server"
LOCUSTFILE = "loadtests/locustfile.py"
HOST = "127.0.0.1"
"""The only address this script lets the server bind and locust connect to."""

MAX_USERS = 1000
"""Most concurrent users: one locust process on a small machine handles about that many sockets."""
MAX_SPAWN_RATE = 200.0
"""Most users started per second."""
MAX_RUN_TIME_S = 600
"""Longest run (10 minutes)."""

READY_LINE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
STARTUP_TIMEOUT_S = {"inline": 30.0, "ray": 180.0}
STOP_TIMEOUT_S = 60.0
LOCUST_GRACE_S = 60.0
"""Beyond run time, spawning and draining: how long locust may take before it is killed."""

OWNED_LOCUST_OPTIONS = frozenset(
    {
        "-u",
        "--users",
        "-r",
        "--spawn-rate",
        "-t",
        "--run-time",
        "-H",
        "--host",
        "--csv",
        "--html",
        "--headless",
        "--master",
        "--worker",
        "--processes",
        "-f",
        "--locustfile",
        "--mesh-summary",
    }
)
"""Locust options this script sets itself; passing them after ``--`` is refused."""

RUN_TIME = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_run_time(text: str) -> int:
    """Seconds in a locust-style duration: ``90``, ``90s``, ``5m``, ``1h30m``, ``2m30s``."""
    match = RUN_TIME.match(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 60s, 5m, 1m30s)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def build_parser() -> argparse.ArgumentParser:
    """The command line; everything after ``--`` goes to locust unchanged (e.g. ``--mesh-rooms``)."""
    parser = argparse.ArgumentParser(
        description="Run loadtests/locustfile.py headless against a Mesh server started here.",
        epilog="Arguments after -- go to locust, e.g. -- --mesh-rooms 20 --mesh-senders 0.5",
    )
    parser.add_argument("-u", "--users", type=int, default=50, help=f"concurrent users (1..{MAX_USERS})")
    parser.add_argument(
        "-r",
        "--spawn-rate",
        type=float,
        default=10.0,
        help=f"users started per second (..{MAX_SPAWN_RATE:g})",
    )
    parser.add_argument(
        "-t", "--run-time", type=parse_run_time, default=30, help=f"e.g. 60s, 5m (max {MAX_RUN_TIME_S} s)"
    )
    parser.add_argument("--runtime", choices=("inline", "ray"), default="inline", help="server runtime")
    parser.add_argument("--gateways", type=int, default=None, help="gateway actors with --runtime ray")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mesh-locust",
        help="output directory (default: <tmp>/mesh-locust)",
    )
    parser.add_argument(
        "--tags", nargs="+", default=None, help="only tasks with these tags: chat commands churn"
    )
    parser.add_argument(
        "--redis-url", default=None, help="server Redis (default: MESH_REDIS_URL, else embedded)"
    )
    parser.add_argument(
        "user_classes", nargs="*", help="user classes to run (default all): ChatUser CommandUser ChurnUser"
    )
    return parser


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: (this script's arguments, locust's)."""
    argv = list(argv)
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: Sequence[str]) -> None:
    """Refuse loads beyond the documented bounds and locust options this script owns."""
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be between 1 and {MAX_USERS}, not {args.users}")
    if not 0 < args.spawn_rate <= MAX_SPAWN_RATE:
        parser.error(f"--spawn-rate must be above 0 and at most {MAX_SPAWN_RATE:g}, not {args.spawn_rate:g}")
    if not 1 <= args.run_time <= MAX_RUN_TIME_S:
        parser.error(f"--run-time must be between 1 s and {MAX_RUN_TIME_S} s, not {args.run_time} s")
    if args.gateways is not None and args.runtime != "ray":
        parser.error("--gateways needs --runtime ray")
    owned = sorted({arg.split("=", 1)[0] for arg in extra} & OWNED_LOCUST_OPTIONS)
    if owned:
        parser.error(f"{', '.join(owned)} after -- is set by this script: use its own options")


def pump(stream: IO[str], sinks: Sequence[IO[str]]) -> threading.Thread:
    """Copy ``stream`` line by line to ``sinks`` in a daemon thread (keeps pipes from filling up)."""

    def copy() -> None:
        for line in stream:
            for sink in sinks:
                sink.write(line)
                sink.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


class Server:
    """``mesh-actors serve`` of the load-test app in a child process, on 127.0.0.1 and a free port."""

    def __init__(self, runtime: str, log_path: Path, gateways: int | None, redis_url: str | None) -> None:
        """Describe the server; :meth:`start` runs it."""
        self.runtime = runtime
        self.log_path = log_path
        self.command = [sys.executable, "-m", "mesh_actors", "serve", APP, "--host", HOST, "--port", "0"]
        self.command += ["--runtime", runtime, "--log-level", "warning"]
        if gateways is not None:
            self.command += ["--gateways", str(gateways)]
        if redis_url is not None:
            self.command += ["--redis-url", redis_url]
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._log: IO[str] | None = None

    def start(self) -> int:
        """Start the server and wait for its ready line; returns the port. Raises if it fails."""
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # Ctrl-C in the terminal reaches this script, which stops it
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S[self.runtime]
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise RuntimeError(f"the server printed no ready line in time: see {self.log_path}")
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the server exited ({self.process.wait()}): see {self.log_path}")
                self._log.write(line)
                match = READY_LINE.search(line)
                if match:
                    self.port = int(match.group(1))
                    break
        self._log.flush()
        pump(self.process.stdout, [self._log])
        return self.port

    def stop(self) -> int | None:
        """SIGINT (a clean drain), then SIGKILL if it takes too long; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"the server did not stop within {STOP_TIMEOUT_S:g} s: killing it", file=sys.stderr)
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
        return process.returncode


def locust_command(args: argparse.Namespace, port: int, out: Path, extra: Sequence[str]) -> list[str]:
    """The headless locust command line for this run (it runs from :data:`ROOT`)."""
    if out.is_relative_to(ROOT):
        out = out.relative_to(ROOT)  # shorter, and the same in every checkout (logs are committed)
    command = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless"]
    command += ["-u", str(args.users), "-r", f"{args.spawn_rate:g}", "-t", f"{args.run_time}s"]
    command += ["--host", f"ws://{HOST}:{port}", "--only-summary"]
    command += ["--csv", str(out / "mesh"), "--html", str(out / "report.html")]
    command += ["--mesh-summary", str(out / "completeness.json")]
    if args.tags:
        command += ["--tags", *args.tags]
    return [*command, *extra, *args.user_classes]


def run_locust(command: Sequence[str], log_path: Path, timeout: float) -> int:
    """Run locust, echoing its output to stdout and ``log_path``; returns its exit code."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # a terminal Ctrl-C reaches this script alone, which passes one on
        )
        assert process.stdout is not None
        printer = pump(process.stdout, [sys.stdout, log])
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"locust did not finish within {timeout:g} s: killing it", file=sys.stderr)
            process.kill()
            code = process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)  # locust stops the test and still writes its reports
            code = process.wait(LOCUST_GRACE_S)
        printer.join(10)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, start the server, run locust, stop the server; returns locust's exit code."""
    own, extra = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    check_bounds(parser, args, extra)
    # find_spec, not import: importing locust would monkey-patch this process with gevent.
    missing = [name for name in ("locust", "websocket") if importlib.util.find_spec(name) is None]
    if missing:
        parser.error(f"{', '.join(missing)} not installed: pip install -e '.[bench]'")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # SIGINT and SIGTERM both end the run cleanly: locust stops and reports, the server drains.
    # (Set explicitly: a shell starts background jobs with SIGINT ignored.)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    server = Server(args.runtime, out / "server.log", args.gateways, args.redis_url)
    env_note = f"redis: {args.redis_url or os.environ.get('MESH_REDIS_URL') or 'embedded'}"
    try:
        port = server.start()
        print(f"server ({args.runtime}, {env_note}) on ws://{HOST}:{port}", flush=True)
        command = locust_command(args, port, out, extra)
        print("$ " + " ".join(command), flush=True)
        timeout = args.run_time + args.users / args.spawn_rate + LOCUST_GRACE_S
        code = run_locust(command, out / "locust.log", timeout)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    finally:
        server_code = server.stop()
    if server_code not in (0, None):
        print(
            f"warning: the server exited with code {server_code}: see {out / 'server.log'}", file=sys.stderr
        )
    print(f"results in {out}: mesh_stats.csv, report.html, completeness.json, locust.log, server.log")
    return code


if __name__ == "__main__":
    sys.exit(main())
