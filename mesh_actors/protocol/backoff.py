"""Retry delays: capped exponential backoff with jitter (client reconnects, actor and Redis retries).

The reference client waits a fixed 2 s between attempts, so after a server restart every client
comes back in the same instant. Growing the delay exponentially stops a client from hammering a
server that stays down, and randomizing it (jitter) spreads a crowd of clients over time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (1-based).

    The *ceiling* of attempt ``n`` is ``min(maximum, initial * multiplier ** (n - 1))``; the delay
    is drawn uniformly from ``[ceiling * (1 - jitter), ceiling]``. ``jitter=1`` is "full jitter"
    (anywhere between 0 and the ceiling), ``jitter=0`` makes the delays deterministic.
    """

    initial: float
    maximum: float
    multiplier: float
    jitter: float

    def __post_init__(self) -> None:
        if self.initial < 0:
            raise ValueError("initial delay must be >= 0")
        if self.maximum < self.initial:
            raise ValueError("maximum delay must be >= the initial delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` can get."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        try:
            raw = self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:
            raw = math.inf
        return min(self.maximum, raw)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A random delay for attempt ``attempt``, within ``[ceiling * (1 - jitter), ceiling]``."""
        ceiling = self.ceiling(attempt)
        draw = (rng or random).random()
        return ceiling - ceiling * self.jitter * draw
