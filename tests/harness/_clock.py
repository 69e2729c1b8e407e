"""A clock tests move by hand, for code that takes its clock as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Call it for the current (fake) UTC time; `advance` moves it. `monotonic` gives seconds
    since the start, for code that wants a monotonic float clock (rate limiters)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2030, 1, 1, tzinfo=UTC)
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, span: timedelta | None = None, **parts: float) -> datetime:
        self.now += span if span is not None else timedelta(**parts)
        return self.now

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()
