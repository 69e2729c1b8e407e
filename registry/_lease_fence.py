"""When a leader's lease certainly ends, on the local clock (pure: times in, a deadline out).

etcd expires a lease TTL seconds after the last keepalive *reached* it; that is later than the
moment the keepalive was *sent*. So `sent + ttl` is a deadline the lease cannot outlive on
etcd's side, whatever happens to the answer: a leader that stops its duties by then never
overlaps a successor (whose lease etcd grants only after ours expired). Clocks run at the
same rate to well under 1 % over a TTL; `margin` covers that and scheduling delays.
"""

from __future__ import annotations


class LeaseFence:
    def __init__(self, ttl: float, sent_at: float, *, margin: float = 0.1) -> None:
        if ttl <= 0:
            raise ValueError("a lease TTL must be positive")
        self.margin = margin
        self.deadline = sent_at + ttl * (1 - margin)

    def renewed(self, sent_at: float, ttl: float) -> None:
        """A keepalive sent at `sent_at` came back with `ttl` seconds left."""
        self.deadline = max(self.deadline, sent_at + ttl * (1 - self.margin))

    def remaining(self, now: float) -> float:
        return self.deadline - now

    def expired(self, now: float) -> bool:
        return now >= self.deadline
