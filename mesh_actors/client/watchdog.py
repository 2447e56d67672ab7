"""The liveness watchdog: notices a server that stopped sending ``ping`` (docs/protocol.md#heartbeat).

A half-open TCP connection (server crashed, NAT entry dropped) can look healthy for minutes; the
server's ping every ``pingInterval`` is the client's only proof that the other end is alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Watchdog"]


class Watchdog:
    """Calls ``on_expire`` once if :meth:`feed` is not called for ``period`` seconds.

    Feeding only moves a deadline; the single timer re-arms itself lazily when it fires early,
    so frequent pings cost no timer churn.
    """

    def __init__(self, period: float | None, on_expire: Callable[[], None]) -> None:
        self.period = period
        self._on_expire = on_expire
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """Whether the watchdog is armed."""
        return self._timer is not None

    def start(self) -> None:
        """Arm the watchdog (no-op when ``period`` is ``None``)."""
        self.stop()
        if self.period is None:
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.period
        self._timer = loop.call_at(self._deadline, self._check)

    def feed(self) -> None:
        """The peer showed it is alive: push the deadline back by a full period."""
        if self._timer is not None and self.period is not None:
            self._deadline = asyncio.get_running_loop().time() + self.period

    def stop(self) -> None:
        """Disarm the watchdog."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check)
            return
        self._timer = None
        self._on_expire()
