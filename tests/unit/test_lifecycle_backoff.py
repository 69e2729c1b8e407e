"""`registry.lifecycle.Backoff`: exponential ceilings, full jitter under them, a cap, a reset."""

from __future__ import annotations

import random

import pytest

from registry.lifecycle import Backoff


def test_ceiling_doubles_from_initial_up_to_the_cap() -> None:
    top = Backoff(initial=1, maximum=8, rand=lambda: 1.0)
    assert [top.next() for _ in range(6)] == [1, 2, 4, 8, 8, 8]


def test_full_jitter_draws_anywhere_from_zero_to_the_ceiling() -> None:
    low = Backoff(initial=1, maximum=8, rand=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0, 0, 0]
    half = Backoff(initial=1, maximum=8, rand=lambda: 0.5)
    assert [half.next() for _ in range(5)] == [0.5, 1, 2, 4, 4]


def test_delays_stay_within_the_ceiling_for_any_random_draw() -> None:
    rng = random.Random(7)
    b = Backoff(initial=0.2, maximum=5.0, rand=rng.random)
    delays = []
    for n in range(40):
        ceiling = b.ceiling
        assert ceiling == min(5.0, 0.2 * 2**n)
        delay = b.next()
        assert 0 <= delay <= ceiling
        delays.append(delay)
    # Jitter really spreads them: not all the same, and late ones use the whole window.
    assert len(set(delays)) == len(delays)
    assert min(delays[10:]) < 2.5 < max(delays[10:])


def test_reset_after_success_starts_again_from_initial() -> None:
    b = Backoff(initial=1, maximum=30, rand=lambda: 1.0)
    for _ in range(5):
        b.next()
    assert b.ceiling == 30 and b.failures == 5
    b.reset()
    assert b.failures == 0 and b.next() == 1 and b.next() == 2


def test_a_very_long_outage_neither_overflows_nor_passes_the_cap() -> None:
    b = Backoff(initial=0.1, maximum=10, rand=lambda: 0.999)
    for _ in range(10_000):
        assert b.next() <= 10
    assert b.ceiling == 10


def test_a_random_source_outside_zero_to_one_cannot_break_the_bounds() -> None:
    assert Backoff(initial=1, maximum=4, rand=lambda: 7.0).next() == 1
    assert Backoff(initial=1, maximum=4, rand=lambda: -3.0).next() == 0


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"), [(0, 1, 2), (-1, 1, 2), (2, 1, 2), (1, 2, 0.5)]
)
def test_nonsense_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial=initial, maximum=maximum, factor=factor)
