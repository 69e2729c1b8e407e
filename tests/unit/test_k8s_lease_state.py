"""Leader election decisions, without an API server or a clock: at most one leader, ever."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from k8s_adapter._lease_state import Election, LeaseRecord, micro_time


def record(holder: str, rv: str, *, duration: float = 15, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration, "t0", "t1", transitions, rv)


def election(name: str = "a") -> Election:
    return Election(name, lease_duration=15, renew_deadline=10)


def test_absent_lease_is_created_and_own_lease_renewed() -> None:
    e = election()
    e.observe(None, now=0)
    action = e.plan(now=0, wall=1_700_000_000.25)
    assert action.verb == "create"
    assert action.spec["holderIdentity"] == "a" and action.spec["leaseDurationSeconds"] == 15
    assert action.spec["renewTime"] == "2023-11-14T22:13:20.250000Z"
    e.written(record("a", "5"), now=0)
    assert e.leading(now=1)
    renew = e.plan(now=2, wall=0)
    assert renew.verb == "update" and renew.resource_version == "5"
    assert renew.spec["leaseTransitions"] == 0


def test_a_live_holder_is_waited_for_and_a_silent_one_replaced() -> None:
    e = election("b")
    e.observe(record("a", "5", transitions=3), now=100)
    assert e.plan(now=110, wall=0).verb == "wait"
    e.observe(record("a", "6", transitions=3), now=112)  # a renewed: the clock restarts
    assert e.plan(now=126, wall=0).verb == "wait"
    e.observe(record("a", "6", transitions=3), now=127.5)  # unchanged for 15.5 s
    takeover = e.plan(now=127.5, wall=0)
    assert takeover.verb == "update" and takeover.spec["holderIdentity"] == "b"
    assert takeover.spec["leaseTransitions"] == 4 and takeover.resource_version == "6"


def test_a_released_lease_is_taken_at_once() -> None:
    e = election("b")
    e.observe(record("", "9", duration=1), now=50)
    assert e.plan(now=50, wall=0).verb == "update"


def test_a_leader_that_cannot_renew_stops_before_the_lease_expires() -> None:
    e = election()
    e.observe(None, now=0)
    e.written(record("a", "1"), now=0)
    assert e.leading(now=9.9)
    assert not e.leading(now=10.0)  # renew_deadline, 5 s before anyone may take over
    assert e.renew_by() == 10.0
    e.observe(record("b", "2"), now=11)
    assert not e.leading(now=11) and e.release(wall=0).verb == "wait"


def test_release_hands_over_with_an_empty_holder() -> None:
    e = election()
    e.observe(None, now=0)
    e.written(record("a", "1", transitions=2), now=0)
    action = e.release(wall=0)
    assert action.spec["holderIdentity"] == "" and action.spec["leaseDurationSeconds"] == 1
    assert action.spec["leaseTransitions"] == 2 and action.resource_version == "1"


@dataclass
class FakeLeaseStore:
    """An API server's Lease: writes succeed only with the current resourceVersion."""

    rec: LeaseRecord | None = None
    rv: int = 0

    def write(self, spec: dict, expected: str) -> LeaseRecord | None:
        if (self.rec is None) != (expected == "") or (
            self.rec and self.rec.resource_version != expected
        ):
            return None  # 409
        self.rv += 1
        self.rec = LeaseRecord(
            spec["holderIdentity"],
            spec["leaseDurationSeconds"],
            spec["acquireTime"],
            spec["renewTime"],
            spec["leaseTransitions"],
            str(self.rv),
        )
        return self.rec


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"), st.floats(0, 6), st.sampled_from(["ok", "lost", "unacked"])
        ),
        min_size=1,
        max_size=120,
    )
)
def test_never_two_leaders_at_once(steps) -> None:
    """Random interleavings of three candidates, pauses, lost writes and lost answers."""
    store = FakeLeaseStore()
    nodes = {n: election(n) for n in "abc"}
    now = 0.0
    for name, pause, fate in steps:
        now += pause
        e = nodes[name]
        e.observe(store.rec, now)
        action = e.plan(now, wall=now)
        if action.verb != "wait" and fate != "lost":
            written = store.write(action.spec, action.resource_version)
            if written is not None and fate == "ok":
                e.written(written, now)
        leaders = [n for n, el in nodes.items() if el.leading(now)]
        assert len(leaders) <= 1, (now, leaders)
        if leaders:
            assert store.rec is not None and store.rec.holder == leaders[0]


def test_micro_time_keeps_microseconds() -> None:
    assert micro_time(0.5).endswith(".500000Z")
