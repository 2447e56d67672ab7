"""Heartbeat bookkeeping for one connection: ping/pong liveness and latency (docs/protocol.md#heartbeat).

Pure state transitions; the gateway's timers call them and act on the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["HeartbeatState", "PingAction"]


class PingAction(enum.Enum):
    """What the gateway must do for a connection at a ping tick."""

    SEND_PING = "send-ping"
    CLOSE = "close"


@dataclass(slots=True)
class HeartbeatState:
    """Liveness and latency of one connection."""

    max_missed_pongs: int = 1
    alive: bool = True
    """False between a ping and its pong."""
    missed_pongs: int = 0
    latency_ms: float = 0.0
    """The last measured round trip in milliseconds (0 before the first measurement)."""
    _latency_started: float | None = None

    def on_ping_tick(self) -> PingAction:
        """A ping tick: close a connection that missed too many pongs, else ping it."""
        if not self.alive:
            self.missed_pongs += 1
            if self.missed_pongs > self.max_missed_pongs:
                return PingAction.CLOSE
        else:
            self.missed_pongs = 0
        self.alive = False
        return PingAction.SEND_PING

    def on_pong(self) -> None:
        """The client answered a ping."""
        self.alive = True
        self.missed_pongs = 0

    def on_latency_tick(self, now: float) -> bool:
        """A latency tick at ``now`` (seconds); True if a latency probe should be sent.

        Probes are skipped once the client has missed a whole ping interval. (The reference skips
        them whenever a ping is pending, so with equal ping and latency intervals it never measures.)
        """
        if self.missed_pongs > 0:
            return False
        self._latency_started = now
        return True

    def on_latency_response(self, now: float) -> float | None:
        """The client echoed the probe at ``now``; returns the new latency in ms, if one was pending."""
        if self._latency_started is None:
            return None
        self.latency_ms = round((now - self._latency_started) * 1000.0, 3)
        self._latency_started = None
        return self.latency_ms
