"""When a server's view of etcd stops being trustworthy (pure logic, hand-moved time)."""

from __future__ import annotations

from registry._freshness import Freshness


def verdict(f: Freshness, now: float, mirror: int, connected: bool = True, down: float = 0.0):
    return f.stale_reason(now, mirror, watch_connected=connected, watch_down_since=down)


def test_a_server_that_keeps_probing_and_following_is_fresh() -> None:
    f = Freshness(bound=5, now=0)
    for t in range(1, 30):
        f.probed(t, latest_revision=10 + t)
        assert verdict(f, t + 0.5, mirror=10 + t) is None


def test_etcd_silent_for_longer_than_the_bound_makes_it_stale() -> None:
    f = Freshness(bound=5, now=0)
    f.probed(1, 10)
    assert verdict(f, 6, mirror=10) is None
    reason = verdict(f, 6.5, mirror=10)
    assert reason is not None and "has not answered for 5.5s" in reason


def test_a_watch_down_for_longer_than_the_bound_makes_it_stale() -> None:
    f = Freshness(bound=5, now=0)
    f.probed(9, 10)
    assert verdict(f, 9, mirror=10, connected=False, down=5) is None
    f.probed(10.5, 10)
    reason = verdict(f, 10.5, mirror=10, connected=False, down=5)
    assert reason is not None and "watch has been down" in reason


def test_a_change_not_applied_within_the_bound_makes_it_stale_until_caught_up() -> None:
    f = Freshness(bound=5, now=0)
    f.probed(1, 20)  # etcd has revision 20; the mirror is at 10
    for t in (2, 3, 4, 5, 6):
        f.probed(t, 20)
        assert verdict(f, t, mirror=10) is None
    f.probed(6.5, 21)
    reason = verdict(f, 6.5, mirror=10)
    assert reason is not None and "5.5s behind" in reason and "revision 21" in reason
    # The watch delivers 20: only 21 (seen at 6.5) is outstanding, and it is young.
    assert verdict(f, 7, mirror=20) is None
    assert verdict(f, 7, mirror=21) is None
