"""Client configuration: every knob of :class:`~mesh_actors.client.MeshClient`, with its default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..protocol import Dialect
from ..protocol.backoff import Backoff

__all__ = ["ClientOptions"]

_DIALECT_NAMES = {"mesh": Dialect.MESH, "mesh/": Dialect.MESH, "rt": Dialect.RT, "rt/": Dialect.RT}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """Options of a :class:`~mesh_actors.client.MeshClient`; all durations are in seconds.

    Pass an instance as ``MeshClient(url, options)``, or the same names as keywords
    (``MeshClient(url, command_timeout=5)``); keywords override fields of ``options``.
    """

    dialect: Dialect | str | None = None
    """Prefix of built-in commands: ``Dialect.MESH`` (``mesh/``), ``Dialect.RT`` (``rt/``), the
    strings ``"mesh"``/``"rt"``, or ``None`` (default) to adopt the dialect of the first
    ``assign-id`` frame the server sends (our server sends both, the Mesh server only ``mesh/``,
    the realtime server only ``rt/``). The detected dialect is kept for the client's lifetime."""

    command_timeout: float | None = 30.0
    """Default time a command waits for its response (reference: 30 s); ``None`` waits forever."""

    open_timeout: float = 10.0
    """Time allowed for one connection attempt: TCP + WebSocket handshake + the ``assign-id``
    frame. The reference waits forever for ``assign-id``; a bound keeps a client that talks to a
    server of the other dialect (which never sends ours) from hanging."""

    close_timeout: float = 5.0
    """Time :meth:`~mesh_actors.client.MeshClient.close` waits for the server to acknowledge the
    WebSocket closing handshake before dropping the TCP connection."""

    ping_timeout: float | None = 30.0
    """Liveness watchdog period; set it to the server's ping interval (30 s by default). If no
    ``ping`` arrives for ``ping_timeout * (max_missed_pings + 1)`` the connection is considered
    dead and dropped (then reconnected if ``should_reconnect``). ``None`` disables the watchdog."""

    max_missed_pings: int = 1
    """Watchdog tolerance: pings that may be missed before the connection is dropped."""

    should_reconnect: bool = True
    """Reconnect automatically after the connection is lost or the watchdog fires."""

    reconnect_initial_delay: float = 0.5
    """Ceiling of the delay before the first reconnect attempt."""

    reconnect_max_delay: float = 30.0
    """Cap of the exponentially growing delay between reconnect attempts."""

    reconnect_multiplier: float = 2.0
    """Growth factor of the delay ceiling from one attempt to the next."""

    reconnect_jitter: float = 1.0
    """Fraction of each delay that is random: the delay is drawn from
    ``[ceiling * (1 - jitter), ceiling]``. The default 1.0 is "full jitter"; 0 disables jitter."""

    max_reconnect_attempts: int | None = None
    """Attempts per reconnect cycle before giving up (``reconnect_failed``); ``None`` = unbounded."""

    offline_queue_size: int = 1000
    """Commands that may wait for the connection while it is being (re)established; beyond
    that, :meth:`~mesh_actors.client.MeshClient.command` raises at once. 0 disables the queue."""

    offline_queue_expiry: float = 30.0
    """Longest time a command waits in the offline queue; then it fails with a timeout."""

    raise_errors: bool = True
    """Raise :class:`~mesh_actors.client.MeshCommandError` when the server answers with an error
    payload. ``False`` returns the error object like the JavaScript clients do."""

    headers: Mapping[str, str] | None = None
    """Extra HTTP headers for the WebSocket upgrade request (e.g. ``Authorization`` or ``Cookie``
    read by the server's ``authenticate_connection``)."""

    max_message_size: int | None = 100 * 2**20
    """Largest inbound message in bytes (the reference server's default ``maxPayload``, 100 MiB);
    ``None`` disables the limit."""

    def __post_init__(self) -> None:
        if isinstance(self.dialect, str):
            try:
                object.__setattr__(self, "dialect", _DIALECT_NAMES[self.dialect])
            except KeyError:
                raise ValueError(f"unknown dialect {self.dialect!r}; use 'mesh' or 'rt'") from None
        _positive("command_timeout", self.command_timeout, optional=True)
        _positive("open_timeout", self.open_timeout)
        _positive("close_timeout", self.close_timeout)
        _positive("ping_timeout", self.ping_timeout, optional=True)
        _positive("offline_queue_expiry", self.offline_queue_expiry)
        _positive("max_message_size", self.max_message_size, optional=True)
        if self.max_missed_pings < 0:
            raise ValueError("max_missed_pings must be >= 0")
        if self.max_reconnect_attempts is not None and self.max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must be >= 0 or None")
        if self.offline_queue_size < 0:
            raise ValueError("offline_queue_size must be >= 0")
        self.backoff()  # validates the reconnect_* fields

    @property
    def watchdog_period(self) -> float | None:
        """Silence (no ``ping``) after which the connection is dropped; ``None`` if disabled."""
        if self.ping_timeout is None:
            return None
        return self.ping_timeout * (self.max_missed_pings + 1)

    def backoff(self) -> Backoff:
        """The reconnect delay policy described by the ``reconnect_*`` fields."""
        return Backoff(
            initial=self.reconnect_initial_delay,
            maximum=self.reconnect_max_delay,
            multiplier=self.reconnect_multiplier,
            jitter=self.reconnect_jitter,
        )


def _positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value <= 0:
        raise ValueError(f"{name} must be > 0" + (" or None" if optional else ""))
