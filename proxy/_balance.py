"""Which endpoint of an upstream takes the next request (HTTP) or connection (TCP). Pure.

Three strategies over the endpoints that failure accrual leaves available:

- `p2c_ewma` (default, as Linkerd): pick two distinct candidates at random, each with a
  probability proportional to its weight, and send to the one with the lower load, where load
  is the peak-EWMA latency times (pending requests + 1). Loads within `TIE` of each other count
  as equal and the first candidate drawn wins, so endpoints that perform alike share traffic by
  weight, while a slow or busy endpoint loses whatever its weight. (Without the tie rule the
  peak-EWMA's recency would even out shares between equally fast endpoints and ignore weights.)
- `least_request`: the same two weighted candidates, compared by pending requests only.
- `round_robin`: smooth weighted round robin (nginx's): exact shares by weight.

The clock (`now`, seconds) and the random source are passed in.
"""

from __future__ import annotations

import bisect
import random as _random
from collections.abc import Iterable
from dataclasses import dataclass

from ._accrual import AccrualPolicy, FailureAccrual, State
from ._peak_ewma import DEFAULT_DECAY, DEFAULT_RTT, PeakEwma

STRATEGIES = ("p2c_ewma", "round_robin", "least_request")
# A transport failure (refused, reset, TLS refusal) counts as this slow in the EWMA, so P2C
# steers away from a failing endpoint before accrual ejects it.
FAILURE_PENALTY = 1.0
TIE = 1.10


@dataclass(eq=False, slots=True)
class Endpoint:
    """Balancer state of one endpoint; `key` is "address:port"."""

    key: str
    weight: int
    ewma: PeakEwma
    accrual: FailureAccrual
    pending: int = 0
    picks: int = 0  # requests or connections sent to it, ever
    rr_current: int = 0

    def available(self, now: float) -> bool:
        return self.accrual.available(now)


class Balancer:
    def __init__(
        self,
        strategy: str = "p2c_ewma",
        *,
        rng: _random.Random | None = None,
        accrual: AccrualPolicy | None = None,
        default_rtt: float = DEFAULT_RTT,
        decay: float = DEFAULT_DECAY,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown balancer {strategy!r}; use one of {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.rng = rng or _random.Random()
        self.accrual_policy = accrual or AccrualPolicy()
        self._default_rtt = default_rtt
        self._decay = decay
        self.endpoints: list[Endpoint] = []
        self._by_key: dict[str, Endpoint] = {}
        self._cumulative: list[int] = []
        self._total = 0

    # -- configuration -------------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[tuple[str, int]], now: float) -> None:
        """Replace the endpoint set; endpoints that stay keep their latency and failure state."""
        kept: list[Endpoint] = []
        by_key: dict[str, Endpoint] = {}
        for key, weight in endpoints:
            ep = self._by_key.get(key)
            if ep is None:
                ep = Endpoint(
                    key=key,
                    weight=weight,
                    ewma=PeakEwma(now, rtt=self._default_rtt, decay=self._decay),
                    accrual=FailureAccrual(self.accrual_policy, self.rng.random),
                )
            ep.weight = weight
            kept.append(ep)
            by_key[key] = ep
        self.endpoints = kept
        self._by_key = by_key
        self._cumulative = []
        total = 0
        for ep in kept:
            total += ep.weight
            self._cumulative.append(total)
        self._total = total

    def get(self, key: str) -> Endpoint | None:
        return self._by_key.get(key)

    # -- picking -------------------------------------------------------------------------

    def pick(self, now: float, exclude: Iterable[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next request, or None if none is available."""
        endpoints = self.endpoints
        n = len(endpoints)
        if n == 0:
            return None
        excluded = set(exclude) if exclude else None
        if n == 1 and excluded is None:
            only = endpoints[0]
            return only if only.accrual.available(now) else None
        if excluded is None and self.strategy != "round_robin":
            # The common case costs O(1): draw from all, and only if a drawn endpoint is out
            # (ejected) build the list of those that are in.
            a, b = self._two(endpoints, self._cumulative, self._total)
            if a.accrual.available(now) and b.accrual.available(now):
                return self._better(a, b, now)
        candidates = [
            ep
            for ep in endpoints
            if (excluded is None or ep not in excluded) and ep.accrual.available(now)
        ]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        if self.strategy == "round_robin":
            return self._round_robin(candidates)
        cumulative, total = [], 0
        for ep in candidates:
            total += ep.weight
            cumulative.append(total)
        a, b = self._two(candidates, cumulative, total)
        return self._better(a, b, now)

    def _better(self, a: Endpoint, b: Endpoint, now: float) -> Endpoint:
        if self.strategy == "least_request":
            return a if a.pending <= b.pending else b
        load_a = a.ewma.current(now) * (a.pending + 1)
        load_b = b.ewma.current(now) * (b.pending + 1)
        return a if load_a <= load_b * TIE else b

    def _two(
        self, candidates: list[Endpoint], cumulative: list[int], total: int
    ) -> tuple[Endpoint, Endpoint]:
        rand = self.rng.random
        first = bisect.bisect_right(cumulative, rand() * total)
        if first >= len(candidates):
            first = len(candidates) - 1
        # The second is drawn from the others, still in proportion to weight.
        rest = total - candidates[first].weight
        point = rand() * rest
        below = cumulative[first - 1] if first else 0
        if point >= below:
            point += candidates[first].weight
        second = bisect.bisect_right(cumulative, point)
        if second >= len(candidates) or second == first:
            second = (first + 1) % len(candidates)
        return candidates[first], candidates[second]

    @staticmethod
    def _round_robin(candidates: list[Endpoint]) -> Endpoint:
        total = 0
        best = candidates[0]
        for ep in candidates:
            ep.rr_current += ep.weight
            total += ep.weight
            if ep.rr_current > best.rr_current:
                best = ep
        best.rr_current -= total
        return best

    # -- outcomes ------------------------------------------------------------------------

    def start(self, ep: Endpoint) -> None:
        """A request (or connection) is being sent to `ep`."""
        ep.pending += 1
        ep.picks += 1
        ep.accrual.on_dispatch()

    def finish(
        self, ep: Endpoint, now: float, rtt: float, *, ok: bool, transport: bool = False
    ) -> bool:
        """The answer arrived (or the attempt failed); True if this ejected the endpoint.

        `transport` marks failures where no answer came at all (refused, reset, TLS refusal).
        """
        if ep.pending > 0:
            ep.pending -= 1
        ep.ewma.observe(max(rtt, FAILURE_PENALTY) if transport else rtt, now)
        if ok:
            ep.accrual.on_success()
            return False
        return ep.accrual.on_failure(now)

    def release(self, ep: Endpoint) -> None:
        """A dispatched attempt ended without a verdict (cancelled, or the client went away)."""
        if ep.pending > 0:
            ep.pending -= 1
        if ep.accrual.state is State.PROBING:
            ep.accrual.state = State.PROBE

    def counts(self, now: float) -> dict[str, int]:
        out = {"available": 0, "ejected": 0}
        for ep in self.endpoints:
            out["available" if ep.accrual.available(now) else "ejected"] += 1
        return out
