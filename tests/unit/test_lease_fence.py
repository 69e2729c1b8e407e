"""A leader's lease deadline on the local clock (pure; time moved by hand)."""

from __future__ import annotations

import pytest

from registry._lease_fence import LeaseFence
from tests.harness import FakeClock


def test_the_deadline_counts_from_when_the_request_was_sent_not_answered() -> None:
    clock = FakeClock()
    sent = clock.monotonic()
    clock.advance(seconds=4)  # the grant took 4 s to answer
    fence = LeaseFence(10, sent, margin=0.1)
    assert fence.deadline == sent + 9
    assert not fence.expired(clock.monotonic())
    clock.advance(seconds=5)
    assert fence.expired(clock.monotonic())  # 9 s after sending, whatever the answer said


def test_a_renewal_moves_the_deadline_and_a_late_answer_never_shortens_it() -> None:
    clock = FakeClock()
    fence = LeaseFence(10, clock.monotonic(), margin=0.0)
    clock.advance(seconds=3)
    fence.renewed(clock.monotonic(), 10)
    assert fence.deadline == 13
    fence.renewed(1.0, 10)  # an answer to an older keepalive arriving late
    assert fence.deadline == 13
    clock.advance(seconds=9.9)
    assert not fence.expired(clock.monotonic())
    clock.advance(seconds=0.1)
    assert fence.expired(clock.monotonic())


def test_a_hung_keepalive_does_not_extend_the_lease() -> None:
    clock = FakeClock()
    fence = LeaseFence(10, clock.monotonic(), margin=0.0)
    clock.advance(seconds=3.3)
    # A keepalive is sent now and never answers: nothing calls renewed().
    clock.advance(seconds=6.7)
    assert fence.expired(clock.monotonic())


def test_a_non_positive_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="TTL"):
        LeaseFence(0, 0.0)
