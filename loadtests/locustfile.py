"""Locust suite for a Mesh server: chat rooms, closed-loop commands and connection churn.

Run it headless against ``loadtests/locust_app.py`` (``loadtests/run_locust.py`` starts that server,
runs this file with bounded users and time, and stops it again)::

    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 30s --host ws://127.0.0.1:8080 \\
        --csv out/mesh --html out/report.html

Scenarios, selectable by user class (``locust -f ... ChatUser CommandUser``) or by tag
(``--tags chat commands churn``; a class whose tasks are all filtered out is not spawned):

- ``ChatUser`` (tag ``chat``): joins one of ``--mesh-rooms`` rooms and stays; a ``--mesh-senders``
  fraction of them send ``chat-send`` every ``--mesh-chat-interval`` seconds, which the server
  broadcasts to the room as ``room-message``. Receivers report the delivery latency (the payload
  carries the send time) as ``WS push room-message``.
- ``CommandUser`` (tag ``commands``): ``echo`` and connection-metadata commands in a closed loop
  (one in flight per user, ``--mesh-command-wait`` seconds between them).
- ``ChurnUser`` (tag ``churn``): every ``--mesh-churn-interval`` seconds connects, joins one of
  ``--mesh-churn-rooms`` rooms (never a chat room), sends one message there, waits for its own
  copy, leaves and disconnects.

Every command is reported through ``events.request`` as ``WS command <name>``, every push as
``WS push <name>``, connects and disconnects as ``WS connect`` / ``WS disconnect``.

Delivery completeness: each scenario keeps a tally of the messages that must arrive (*expected*)
and those that did (*received*). For chat, expected is the sum of the delivery counts the server
returns to senders (``broadcast_room``'s count of frames written to members, the sender included)
and received is every ``room-message`` counted by chat users; for commands, commands sent against
responses received; for churn, each answered send against its sender's own copy. When the test
stops, no new message is sent and the suite waits (event-driven, at most
``--mesh-drain-timeout`` seconds) until nothing is in flight, then prints one line per scenario,
``delivery completeness [chat]: expected=N received=N lost=0``, and makes locust exit with code 1
if anything was lost. Tallies live in this process: run locust as one process (no
``--processes``/workers) for the summary to cover the whole test.

The WebSocket client is ``websocket-client``, a blocking library that locust's gevent monkey
patching makes cooperative; each connection has one reader greenlet.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gevent
import orjson
import websocket
from gevent.event import AsyncResult, Event
from locust import User, events, tag, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

HEARTBEATS = {"ping": "pong", "latency:request": "latency:response"}
"""Server heartbeat pushes and the frame each is answered with."""

IGNORED_PUSHES = frozenset({"mesh/assign-id", "rt/assign-id", "latency"})
"""Pushes handled by the client itself, never reported."""

RUN_ID = uuid.uuid4().hex[:8]
"""Part of every room name, so rooms of an earlier run on the same Redis never mix in."""


class MeshRequestError(Exception):
    """A command failed: an error payload, a timeout or a lost connection (already reported).

    ``answered`` is True when a response did arrive (an error payload): the request failed, but
    nothing was lost on the way.
    """

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


# -- completeness tallies -------------------------------------------------------------------------


@dataclass
class Tally:
    """Messages one scenario expects and receives; see the module docstring for each scenario.

    ``pending`` counts operations still running whose outcome can still change ``expected`` or
    ``received``; ``unconfirmed`` counts sends that failed, so nobody knows how many copies the
    server made of them (each one is a failure of its own).
    """

    expected: int = 0
    received: int = 0
    pending: int = 0
    unconfirmed: int = 0

    @property
    def lost(self) -> int:
        """Messages that were expected and never arrived."""
        return max(self.expected - self.received, 0)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, nothing unconfirmed, nothing still in flight."""
        return self.expected == self.received and self.unconfirmed == 0 and self.pending == 0


SCENARIOS = ("chat", "commands", "churn")
TALLIES: dict[str, Tally] = {name: Tally() for name in SCENARIOS}
ACTIVE: set[str] = set()
"""Scenarios that ran at least one user since the test started (only these are summarized)."""

PUSH_COUNT = {"room-message": 0}
"""``room-message`` pushes reported to locust (all scenarios): the CSV row must show this count."""

STOPPING = Event()
"""Set when the test begins to stop: users send nothing new from then on."""

PROGRESS = Event()
"""Set on every tally change, so the drain at the end waits on events instead of polling."""


def touch() -> None:
    """Signal a tally change to the drain loop (cheap when nobody waits)."""
    PROGRESS.set()


def drained() -> bool:
    """True once every scenario has nothing in flight and chat received all it expects."""
    chat = TALLIES["chat"]
    return all(t.pending == 0 for t in TALLIES.values()) and chat.received >= chat.expected


def summary_lines() -> list[str]:
    """One ``delivery completeness [...]`` line per scenario that ran."""
    lines = []
    for name in SCENARIOS:
        if name not in ACTIVE:
            continue
        t = TALLIES[name]
        line = f"delivery completeness [{name}]: expected={t.expected} received={t.received} lost={t.lost}"
        extras = {
            "extra": t.received - t.expected if t.received > t.expected else 0,
            "unconfirmed": t.unconfirmed,
            "pending": t.pending,
        }
        line += "".join(f" {key}={value}" for key, value in extras.items() if value)
        lines.append(line)
    return lines


# -- the WebSocket client -------------------------------------------------------------------------


def fire_request(
    environment: Environment,
    name: str,
    elapsed_ms: float,
    length: int = 0,
    exception: BaseException | None = None,
) -> None:
    """Report one request to locust as ``WS <name>`` (response time in ms, length in bytes)."""
    environment.events.request.fire(
        request_type="WS",
        name=name,
        response_time=elapsed_ms,
        response_length=length,
        exception=exception,
        context={},
    )


PushHandler = Callable[[str, Any, int], None]
"""``handler(command, payload, frame_length)``, called from the connection's reader greenlet."""


class MeshSocket:
    """A Mesh client on one ``websocket-client`` connection, for use inside locust users.

    Why not ``mesh_actors.client``: that client is asyncio, and locust runs users as gevent
    greenlets. This one blocks only its own greenlet (gevent patches the socket), answers the
    server's heartbeats, correlates responses by ``id`` and reports every command, push, connect and
    disconnect through ``environment.events.request``.
    """

    def __init__(self, environment: Environment, url: str, on_push: PushHandler, timeout: float) -> None:
        """Prepare a client for ``url``; nothing connects until :meth:`connect`."""
        self.environment = environment
        self.url = url
        self.on_push = on_push
        self.timeout = timeout
        self.connection_id: str | None = None
        self._ws: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, AsyncResult] = {}
        self._assigned = AsyncResult()
        self._closing = False

    @property
    def connected(self) -> bool:
        """True while the connection is open and not being closed by us."""
        return self._reader is not None and not self._reader.dead and not self._closing

    def report(
        self, name: str, started: float, length: int = 0, exception: BaseException | None = None
    ) -> None:
        """Fire one ``events.request`` as ``WS <name>``, timed from ``started`` (perf_counter)."""
        self.fire(name, (time.perf_counter() - started) * 1000, length, exception)

    def fire(
        self, name: str, elapsed_ms: float, length: int = 0, exception: BaseException | None = None
    ) -> None:
        """Fire one ``events.request`` as ``WS <name>`` with a given response time in ms."""
        fire_request(self.environment, name, elapsed_ms, length, exception)

    def connect(self) -> str:
        """Open the WebSocket and wait for ``mesh/assign-id``; reported as ``WS connect``."""
        started = time.perf_counter()
        try:
            self._ws = websocket.create_connection(
                self.url, timeout=self.timeout, skip_utf8_validation=True, enable_multithread=True
            )
            self._ws.settimeout(None)  # the reader blocks until a frame comes; waits have their own
            self._reader = gevent.spawn(self._read_loop, self._ws)
            connection_id = self._assigned.get(timeout=self.timeout)
        except (OSError, websocket.WebSocketException, gevent.Timeout) as error:
            failure = MeshRequestError(f"connect failed: {type(error).__name__}: {error}")
            self.report("connect", started, exception=failure)
            self.abort()
            raise failure from error
        self.connection_id = connection_id
        self.report("connect", started)
        return connection_id

    def command(self, name: str, payload: Any = None) -> Any:
        """Send a command and wait for its response; reported as ``WS command <name>``.

        Returns the response payload; raises :class:`MeshRequestError` (after reporting the
        failure) on an error payload, a timeout or a lost connection.
        """
        report_name = f"command {name}"
        started = time.perf_counter()
        ws = self._ws
        if ws is None or not self.connected:
            failure = MeshRequestError("not connected")
            self.report(report_name, started, exception=failure)
            raise failure
        request_id = next(self._ids)
        waiter = AsyncResult()
        self._pending[request_id] = waiter
        try:
            ws.send(orjson.dumps({"id": request_id, "command": name, "payload": payload}).decode())
            response, length = waiter.get(timeout=self.timeout)
        except gevent.Timeout:
            failure = MeshRequestError(f"no response within {self.timeout:g} s")
            self.report(report_name, started, exception=failure)
            raise failure from None
        except (OSError, websocket.WebSocketException, MeshRequestError) as error:
            failure = MeshRequestError(f"{type(error).__name__}: {error}")
            self.report(report_name, started, exception=failure)
            raise failure from error
        finally:
            self._pending.pop(request_id, None)
        if isinstance(response, dict) and "error" in response and "code" in response:
            failure = MeshRequestError(f"{response['code']}: {response['error']}", answered=True)
            self.report(report_name, started, length, failure)
            raise failure
        self.report(report_name, started, length)
        return response

    def close(self) -> None:
        """Close with the WebSocket closing handshake (bounded); reported as ``WS disconnect``."""
        ws, reader = self._ws, self._reader
        if ws is None or reader is None or self._closing:
            self.abort()
            return
        self._closing = True
        started = time.perf_counter()
        exception: BaseException | None = None
        try:
            ws.send_close(websocket.STATUS_NORMAL)
            # The reader returns once the server's close frame arrives (or the socket ends).
            reader.join(timeout=self.timeout)
            if not reader.dead:
                exception = MeshRequestError(f"no closing handshake within {self.timeout:g} s")
        except (OSError, websocket.WebSocketException) as error:
            exception = MeshRequestError(f"close failed: {type(error).__name__}: {error}")
        self.report("disconnect", started, exception=exception)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (no handshake, no report) and stop the reader."""
        self._closing = True
        if self._ws is not None:
            self._ws.shutdown()
        if self._reader is not None and not self._reader.dead and self._reader is not gevent.getcurrent():
            self._reader.kill(block=False)

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        """Read frames until the connection ends: resolve responses, answer heartbeats, pass pushes on."""
        reason = "connection closed by the server"
        try:
            while True:
                opcode, frame = ws.recv_data_frame()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                self._on_message(ws, frame.data)
        except (OSError, websocket.WebSocketException) as error:
            reason = f"{type(error).__name__}: {error}"
        lost = MeshRequestError(f"connection lost: {reason}")
        for waiter in list(self._pending.values()):
            waiter.set_exception(lost)
        if not self._assigned.ready():
            self._assigned.set_exception(lost)
        if not self._closing:
            self.fire("connection lost", 0, exception=lost)

    def _on_message(self, ws: websocket.WebSocket, data: bytes) -> None:
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.fire("push <invalid>", 0, len(data), MeshRequestError("a frame that is not JSON"))
            return
        if not isinstance(frame, dict):
            return
        command, payload = frame.get("command"), frame.get("payload")
        if "id" in frame and command not in HEARTBEATS:
            waiter = self._pending.get(frame["id"])  # none: a response that came after its timeout
            if waiter is not None:
                waiter.set((payload, len(data)))
        elif command in HEARTBEATS:
            ws.send(orjson.dumps({"command": HEARTBEATS[command], "payload": {}}).decode())
        elif command == "mesh/assign-id":
            if not self._assigned.ready():
                self._assigned.set(payload)
        elif command not in IGNORED_PUSHES and isinstance(command, str):
            self.on_push(command, payload, len(data))


# -- users ----------------------------------------------------------------------------------------


def now_ms() -> float:
    """Wall-clock ms since the epoch: the send time carried in messages (same host, same clock)."""
    return time.time() * 1000


class MeshUser(User):
    """A locust user with its own Mesh connection; subclasses are the scenarios."""

    abstract = True
    scenario = ""
    """Key of this user's tally in :data:`TALLIES`."""

    def __init__(self, environment: Environment) -> None:
        """Create the user; the connection opens in ``on_start``."""
        super().__init__(environment)
        self.options = options_of(environment)
        self.socket: MeshSocket | None = None
        self.next_task = 0.0
        ACTIVE.add(self.scenario)

    def pace(self, interval: float) -> None:
        """Start the next task ``interval`` seconds after this one started (constant pacing)."""
        self.next_task = time.monotonic() + interval

    def wait_time(self) -> float:
        """What is left of the interval the current task set with :meth:`pace` (0 if none)."""
        return max(self.next_task - time.monotonic(), 0.0)

    def open_socket(self) -> MeshSocket:
        """Connect a new :class:`MeshSocket` to the target host (raises if that fails)."""
        if not self.host:
            raise ValueError("no target: pass --host ws://127.0.0.1:PORT")
        socket = MeshSocket(self.environment, self.host, self.on_push, self.options.mesh_timeout)
        socket.connect()
        return socket

    def on_push(self, command: str, payload: Any, length: int) -> None:
        """Report a push; ``room-message`` ones are timed from their ``t`` and passed on."""
        if command != "room-message" or not isinstance(payload, dict):
            self.report_push(command, 0, length)
            return
        sent = payload.get("t")
        self.report_push(command, now_ms() - sent if isinstance(sent, int | float) else 0.0, length)
        self.on_room_message(payload)

    def on_room_message(self, message: dict[str, Any]) -> None:
        """Count a received room message in the scenario's tally (subclasses)."""

    def report_push(self, command: str, latency_ms: float, length: int) -> None:
        """Fire ``WS push <command>`` (``room-message`` ones are also counted for the summary)."""
        if command in PUSH_COUNT:
            PUSH_COUNT[command] += 1
        fire_request(self.environment, f"push {command}", max(latency_ms, 0.0), length)

    def on_stop(self) -> None:
        """Disconnect with the closing handshake."""
        if self.socket is not None:
            self.socket.close()
            self.socket = None


class ChatUser(MeshUser):
    """Joins a chat room and stays; a fraction of the users send, every member receives."""

    weight = 6
    scenario = "chat"
    _numbers = itertools.count()

    def __init__(self, environment: Environment) -> None:
        """Pick the room and whether this user sends, spreading senders evenly across rooms."""
        super().__init__(environment)
        number = next(ChatUser._numbers)
        rooms: int = self.options.mesh_rooms
        fraction: float = self.options.mesh_senders
        self.room = f"chat-{RUN_ID}-{number % rooms}"
        # Users are dealt to rooms in layers of `rooms`; whole layers send, at the given fraction,
        # the first layer always: so every room gets senders and small tests still send.
        layer = number // rooms
        self.sender = math.ceil((layer + 1) * fraction) > math.ceil(layer * fraction)

    def on_start(self) -> None:
        """Connect and join the room."""
        self.join()

    def join(self) -> bool:
        """(Re)connect and join the room; False if that failed (already reported)."""
        if self.socket is not None:
            self.socket.abort()
            self.socket = None
        try:
            self.socket = self.open_socket()
            self.socket.command("mesh/join-room", {"roomName": self.room})
        except MeshRequestError:
            return False
        return True

    @tag("chat")
    @task
    def chat(self) -> None:
        """Senders send one message to the room; everyone else just listens."""
        self.pace(self.options.mesh_chat_interval)
        if STOPPING.is_set():
            return
        if (self.socket is None or not self.socket.connected) and not self.join():
            return
        if not self.sender or self.socket is None:
            return
        tally = TALLIES["chat"]
        tally.pending += 1
        try:
            reply = self.socket.command("chat-send", {"roomName": self.room, "text": "hello", "t": now_ms()})
        except MeshRequestError:
            tally.unconfirmed += 1
        else:
            delivered = reply.get("delivered") if isinstance(reply, dict) else None
            if isinstance(delivered, int):
                tally.expected += delivered
            else:  # no count: the deliveries of this send cannot be checked
                tally.unconfirmed += 1
                problem = MeshRequestError(f"no delivery count in {reply!r}")
                fire_request(self.environment, "command chat-send (check)", 0, exception=problem)
        finally:
            tally.pending -= 1
            touch()

    def on_room_message(self, message: dict[str, Any]) -> None:
        """Every room message a chat user gets counts."""
        TALLIES["chat"].received += 1
        touch()


class CommandUser(MeshUser):
    """Echo and connection-metadata commands in a closed loop: one in flight per user."""

    weight = 3
    scenario = "commands"

    def wait_time(self) -> float:
        """Pause ``--mesh-command-wait`` seconds between commands (0: back to back)."""
        return float(self.options.mesh_command_wait)

    def on_start(self) -> None:
        """Connect (a failure is reported; the tasks retry)."""
        try:
            self.socket = self.open_socket()
        except MeshRequestError:
            self.socket = None

    def run_command(self, name: str, payload: Any, check: Callable[[Any], str | None]) -> None:
        """Send one command in the commands tally; ``check(response)`` returns a problem or None."""
        if STOPPING.is_set():
            return
        if self.socket is None or not self.socket.connected:
            self.on_start()
            if self.socket is None:
                return
        tally = TALLIES["commands"]
        tally.expected += 1
        tally.pending += 1
        try:
            response = self.socket.command(name, payload)
        except MeshRequestError as error:
            if error.answered:
                tally.received += 1  # an error payload did arrive: a failure, not a loss
        else:
            tally.received += 1
            problem = check(response)
            if problem is not None:
                self.socket.fire(f"command {name} (check)", 0, exception=MeshRequestError(problem))
        finally:
            tally.pending -= 1
            touch()

    @tag("commands")
    @task(3)
    def echo(self) -> None:
        """``echo`` a small payload and check it comes back unchanged."""
        payload = {"n": time.monotonic_ns(), "text": "x" * 64}
        self.run_command("echo", payload, lambda r: None if r == payload else f"echo mismatch: {r!r}")

    @tag("commands")
    @task(1)
    def set_metadata(self) -> None:
        """Merge a counter into the connection's metadata."""
        payload = {"metadata": {"n": time.monotonic_ns()}, "options": {"strategy": "merge"}}
        self.run_command(
            "mesh/set-my-connection-metadata",
            payload,
            lambda r: None if isinstance(r, dict) and r.get("success") else f"unexpected {r!r}",
        )

    @tag("commands")
    @task(1)
    def get_metadata(self) -> None:
        """Read the connection's own metadata back."""
        self.run_command(
            "mesh/get-my-connection-metadata",
            None,
            lambda r: None if isinstance(r, dict) and "metadata" in r else f"unexpected {r!r}",
        )


class ChurnUser(MeshUser):
    """Connect, join, send, leave, disconnect: one cycle per ``--mesh-churn-interval`` seconds.

    Churn rooms are never chat rooms, so the chat tally stays exact. Members that leave cannot
    count what was sent to them, so the churn tally follows each sender's own copy only: the sender
    is a member when it sends, so its copy must arrive before it leaves.
    """

    weight = 1
    scenario = "churn"
    _numbers = itertools.count()

    def __init__(self, environment: Environment) -> None:
        """Spread churn users over the churn rooms."""
        super().__init__(environment)
        number = next(ChurnUser._numbers)
        self.room = f"churn-{RUN_ID}-{number % self.options.mesh_churn_rooms}"
        self.token = ""
        self.own_copy = Event()

    @tag("churn")
    @task
    def cycle(self) -> None:
        """One connect → join → send → (own copy) → leave → disconnect cycle."""
        self.pace(self.options.mesh_churn_interval)
        if STOPPING.is_set():
            return
        tally = TALLIES["churn"]
        tally.pending += 1
        try:
            self.socket = self.open_socket()
            self.socket.command("mesh/join-room", {"roomName": self.room})
            self.token = uuid.uuid4().hex
            self.own_copy.clear()
            try:
                self.socket.command("chat-send", {"roomName": self.room, "text": self.token, "t": now_ms()})
            except MeshRequestError:
                tally.unconfirmed += 1
                raise
            tally.expected += 1
            if not self.own_copy.wait(self.options.mesh_timeout):
                missing = MeshRequestError(f"own message not received within {self.options.mesh_timeout:g} s")
                self.socket.fire("push room-message", 0, exception=missing)
            self.socket.command("mesh/leave-room", {"roomName": self.room})
        except MeshRequestError:
            pass  # reported where it happened
        finally:
            self.token = ""
            if self.socket is not None:
                self.socket.close()
                self.socket = None
            tally.pending -= 1
            touch()

    def on_room_message(self, message: dict[str, Any]) -> None:
        """Only the user's own copy counts: other members' messages cannot be tallied exactly."""
        if self.token and message.get("text") == self.token:
            TALLIES["churn"].received += 1
            self.own_copy.set()
            touch()


# -- locust hooks ---------------------------------------------------------------------------------


OPTIONS: dict[str, tuple[type, Any, str]] = {
    "mesh_rooms": (int, 10, "chat rooms"),
    "mesh_senders": (float, 0.25, "fraction of chat users that send"),
    "mesh_chat_interval": (float, 1.0, "seconds between a sender's messages"),
    "mesh_command_wait": (float, 0.1, "seconds between a command user's commands (0: back to back)"),
    "mesh_churn_rooms": (int, 4, "rooms the churn users join (never chat rooms)"),
    "mesh_churn_interval": (float, 2.0, "seconds per churn cycle and user"),
    "mesh_timeout": (float, 10.0, "connect, command and own-message timeout in seconds"),
    "mesh_drain_timeout": (float, 15.0, "at most this long at the end for in-flight messages"),
    "mesh_summary": (str, "", "also write the completeness summary as JSON to this file"),
}
"""The suite's options: ``--mesh-rooms`` etc. (type, default, help)."""


def options_of(environment: Environment) -> argparse.Namespace:
    """The parsed options, or the defaults when locust runs as a library without a command line."""
    if environment.parsed_options is not None:
        return environment.parsed_options
    return argparse.Namespace(**{name: default for name, (_, default, _) in OPTIONS.items()})


@events.init_command_line_parser.add_listener
def add_options(parser: LocustArgumentParser) -> None:
    """Register :data:`OPTIONS` (also shown in the web UI)."""
    group = parser.add_argument_group("mesh load test")
    for name, (kind, default, text) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default!r})")


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    """Reset the tallies, and drop user classes that tag filtering left without tasks.

    Locust filters tasks by ``--tags`` but still spawns a class with none left (which then fails),
    so selecting scenarios by tag needs this.
    """
    for name in SCENARIOS:
        TALLIES[name] = Tally()
    ACTIVE.clear()
    PUSH_COUNT["room-message"] = 0
    STOPPING.clear()
    kept = [user_class for user_class in environment.user_classes if user_class.tasks]
    if not kept:
        raise ValueError("no user class has tasks left after filtering by tags")
    environment.user_classes[:] = kept


@events.test_stopping.add_listener
def on_test_stopping(environment: Environment, **_: Any) -> None:
    """Stop sending, then wait (bounded) until every in-flight message has arrived or timed out.

    Runs before locust stops the users, so their connections are still open and reading.
    """
    STOPPING.set()
    deadline = time.monotonic() + options_of(environment).mesh_drain_timeout
    while not drained():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        PROGRESS.clear()  # greenlets switch only at blocking calls: no change is missed in between
        PROGRESS.wait(remaining)


def write_final_csv(environment: Environment) -> None:
    """Rewrite the ``--csv`` request, failure and exception files with the final numbers.

    Locust's headless CSV writer refreshes these files once a second and does not write them again
    at the end, so they can miss the last second, drain included (a count lower than the console
    table's). Written here, once the users are stopped, they hold the final numbers; a later tick
    of locust's writer rewrites the same content.
    """
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return
    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    files = {"stats": stats_csv.requests_csv, "failures": stats_csv.failures_csv}
    files["exceptions"] = stats_csv.exceptions_csv
    for suffix, write in files.items():
        with open(f"{prefix}_{suffix}.csv", "w") as file:  # as locust opens them: same bytes
            write(csv.writer(file))


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    """Print the completeness lines (a loss makes locust exit with code 1); finish the CSV files."""
    write_final_csv(environment)
    lines = summary_lines()
    for line in lines:
        print(line, flush=True)
    ok = all(TALLIES[name].ok for name in ACTIVE)
    if not ok:
        environment.process_exit_code = 1
    path = options_of(environment).mesh_summary
    if path:
        report = {
            "ok": ok,
            "scenarios": {
                name: {**asdict(TALLIES[name]), "lost": TALLIES[name].lost}
                for name in SCENARIOS
                if name in ACTIVE
            },
            "pushes": dict(PUSH_COUNT),
            "lines": lines,
        }
        Path(path).write_text(json.dumps(report, indent=2) + "\n")


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    """Stop a still-running test before locust picks its exit code (Ctrl-C, SIGTERM).

    On ``-t`` the test is stopped before locust quits; on a signal locust decides the exit code
    first and stops the users afterwards, which would come too late for a loss to count.
    """
    if environment.runner is not None:
        environment.runner.stop()  # a no-op once stopped
