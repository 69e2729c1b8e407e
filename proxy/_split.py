"""Weighted backends: which one a request goes to. Pure; the random source is passed in.

A route's backends each carry a whole-number weight; a backend's share is its weight over
the sum (Istio's, SMI's and Gateway API's rule). Weight 0 keeps a backend configured but
idle. One backend gets everything without a draw.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Weighted(Generic[T]):
    item: T
    weight: int


class Split(Generic[T]):
    __slots__ = ("_cumulative", "_items", "_total", "only")

    def __init__(self, backends: Sequence[Weighted[T]]) -> None:
        live = [b for b in backends if b.weight > 0]
        if not live:
            raise ValueError("a split needs at least one backend with a weight above 0")
        self._items = [b.item for b in live]
        self._cumulative: list[int] = []
        total = 0
        for b in live:
            total += b.weight
            self._cumulative.append(total)
        self._total = total
        self.only: T | None = self._items[0] if len(self._items) == 1 else None

    @property
    def items(self) -> list[T]:
        return list(self._items)

    def share(self, index: int) -> float:
        prev = self._cumulative[index - 1] if index else 0
        return (self._cumulative[index] - prev) / self._total

    def pick(self, rng: random.Random) -> T:
        if len(self._items) == 1:
            return self._items[0]
        draw = rng.randrange(self._total)
        return self._items[bisect.bisect_right(self._cumulative, draw)]
