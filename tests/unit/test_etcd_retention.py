"""Which revision the leader may compact to: the newest seen `retention` seconds ago."""

from __future__ import annotations

from registry._etcd_upkeep import RetentionWindow


def test_nothing_is_compacted_until_a_sample_is_older_than_the_retention() -> None:
    window = RetentionWindow(retention=600)
    assert window.observe(0, 100) == 0
    assert window.observe(300, 200) == 0
    assert window.observe(599, 250) == 0
    assert window.observe(600, 300) == 100  # revision 100 was seen 600 s ago


def test_the_target_is_the_newest_revision_old_enough_and_never_goes_back() -> None:
    window = RetentionWindow(retention=10)
    for t, rev in [(0, 1), (5, 2), (9, 3)]:
        window.observe(t, rev)
    assert window.observe(20, 4) == 3  # 1, 2 and 3 are all older than 10 s: the newest wins
    assert window.observe(21, 5) == 0  # nothing new is old enough yet
    assert window.observe(30, 6) == 4
