"""How much a peer may make an HTTP/2 connection do per second. Pure (the clock is passed in).

Frames that cost the proxy work but carry no request are the cheap attacks on HTTP/2: open a
stream and reset it at once, over and over (CVE-2023-44487, "rapid reset": the server starts
work for every one), or flood SETTINGS or PING frames (each must be answered). Each kind has
a token bucket: a burst, then a steady rate. A well-behaved client never comes near them
(gRPC cancels are resets too, but not thousands a second); a peer that empties one loses its
connection (GOAWAY ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    burst: float
    rate: float  # tokens per second
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Budgets:
    """One connection's allowances."""

    __slots__ = ("_ping", "_resets", "_settings")

    def __init__(
        self,
        *,
        resets: tuple[float, float] = (200, 100),
        settings: tuple[float, float] = (20, 5),
        pings: tuple[float, float] = (50, 10),
    ) -> None:
        self._resets = Bucket(*resets)
        self._settings = Bucket(*settings)
        self._ping = Bucket(*pings)

    def reset(self, now: float) -> bool:
        return self._resets.take(now)

    def settings(self, now: float) -> bool:
        return self._settings.take(now)

    def ping(self, now: float) -> bool:
        return self._ping.take(now)
