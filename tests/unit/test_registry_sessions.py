"""Sessions and locks as pure rules: request decoding, Consul's lock rules, and how the mirror
tells an invalidated lock from a released one (no sockets, no etcd)."""

from __future__ import annotations

import pytest

from registry._errors import InvalidInput
from registry._keys import Keys
from registry._mirror import Mirror, kv_topic
from registry._session_model import (
    LockState,
    Session,
    acquire_outcome,
    release_outcome,
    session_from_consul,
)
from registry.etcd import Event, KeyValue

KEYS = Keys("/t/")


def test_py_consul_and_go_client_bodies_decode_alike() -> None:
    lower = session_from_consul(
        {"name": "n", "lockdelay": "2s", "behavior": "delete", "ttl": "30s"}, node="a", min_ttl=10
    )
    pascal = session_from_consul(
        {"Name": "n", "LockDelay": 2_000_000_000, "Behavior": "delete", "TTL": "30s"},
        node="a",
        min_ttl=10,
    )
    assert (lower.name, lower.lock_delay, lower.behavior, lower.ttl) == ("n", 2.0, "delete", 30)
    assert (pascal.name, pascal.lock_delay, pascal.behavior, pascal.ttl) == (
        "n",
        2.0,
        "delete",
        30,
    )
    # Consul reads a bare number under 1000 as seconds, not nanoseconds.
    assert session_from_consul({"LockDelay": 5}, node="a", min_ttl=10).lock_delay == 5.0
    empty = session_from_consul(None, node="a", min_ttl=10)
    assert (empty.node, empty.behavior, empty.lock_delay, empty.ttl) == ("a", "release", 15, 0)
    assert empty.node_checks == ("serfHealth",) and empty.checks == ()
    assert empty.lease_ttl > 86400 * 365  # no TTL: a lease that does not run out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"TTL": "9s"}, "TTL"),
        ({"TTL": "25h"}, "TTL"),
        ({"LockDelay": "61s"}, "LockDelay"),
        ({"LockDelay": True}, "LockDelay"),
        ({"Behavior": "keep"}, "Behavior"),
        ({"Checks": ["a"], "NodeChecks": ["b"]}, "Checks"),
        ({"Nmae": "typo"}, "Nmae"),
        ([], "body"),
    ],
)
def test_bad_bodies_name_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        session_from_consul(body, node="a", min_ttl=10)
    assert caught.value.message.startswith(field)


def test_session_records_round_trip_and_render_in_consuls_shape() -> None:
    session = session_from_consul(
        {"Name": "x", "TTL": "15s", "ServiceChecks": [{"ID": "service:web"}]},
        node="n1",
        min_ttl=10,
    )
    back = Session.decode(session.encode(), lease=7, create=3, modify=4)
    assert back.id == session.id and back.service_checks == ("service:web",)
    shown = back.consul_json()
    assert shown["TTL"] == "15s" and shown["LockDelay"] == 15_000_000_000
    assert shown["ServiceChecks"] == [{"ID": "service:web", "Namespace": ""}]
    assert (shown["CreateIndex"], shown["ModifyIndex"]) == (3, 4)


def test_lock_rules() -> None:
    free, held = LockState(lock_index=3), LockState(holder="s1", lock_index=4)
    assert acquire_outcome(free, "s1") == (True, 4)  # a new holder counts up
    assert acquire_outcome(held, "s1") == (True, 4)  # the holder again: same index
    assert acquire_outcome(held, "s2") == (False, 4)
    assert release_outcome(held, "s1") and not release_outcome(held, "s2")
    assert not release_outcome(free, "s1")


def _kv(key: str, value: bytes, rev: int, lease: int = 0) -> KeyValue:
    return KeyValue(key, value, rev, rev, 1, lease)


def test_the_mirror_tells_invalidation_from_release() -> None:
    mirror = Mirror(KEYS)
    session = session_from_consul({"LockDelay": "3s"}, node="n", min_ttl=10)
    mirror.load(
        [
            _kv(KEYS.session(session.id), session.encode(), 2, lease=9),
            _kv(KEYS.kv("a"), b"1", 3),
            _kv(KEYS.kv_holder("a"), session.id.encode(), 3, lease=9),
            _kv(KEYS.kv("b"), b"1", 3),
            _kv(KEYS.kv_holder("b"), session.id.encode(), 3, lease=9),
        ],
        revision=3,
    )
    released = mirror.apply(
        [Event("DELETE", KeyValue(KEYS.kv_holder("a"), b"", 0, 4, 0, 0))], revision=4
    )
    assert released.invalidated == {}  # an explicit release: no lock delay
    assert kv_topic("a") in released.topics and mirror.kv_lock_changed["a"] == 4
    # The lease ends: etcd removes the lock and the session in one revision.
    ended = mirror.apply(
        [
            Event("DELETE", KeyValue(KEYS.kv_holder("b"), b"", 0, 5, 0, 0)),
            Event("DELETE", KeyValue(KEYS.session(session.id), b"", 0, 5, 0, 0)),
        ],
        revision=5,
    )
    assert ended.invalidated == {"b": 3.0}
    assert mirror.kv_prefix_index("b") == 5  # a watcher of the prefix sees the change


def _held_by_one_session(mirror: Mirror, keys: int) -> Session:
    """A mirror with `keys` KV keys and key "lock" held by one session with a 3 s delay."""
    session = session_from_consul({"LockDelay": "3s"}, node="n", min_ttl=10)
    mirror.load(
        [
            _kv(KEYS.session(session.id), session.encode(), 2, lease=9),
            _kv(KEYS.kv("lock"), b"1", 3),
            _kv(KEYS.kv_holder("lock"), session.id.encode(), 3, lease=9),
            *(_kv(KEYS.kv(f"bulk/{i:04}"), b"x", 4) for i in range(keys)),
        ],
        revision=4,
    )
    return session


def _deleted(key: str, rev: int) -> Event:
    return Event("DELETE", KeyValue(key, b"", 0, rev, 0, 0))


async def test_an_invalidation_split_across_resync_chunks_is_still_an_invalidation() -> None:
    from registry._fanout import Hub
    from registry._sync import CHUNK, MirrorSync

    mirror = Mirror(KEYS)
    session = _held_by_one_session(mirror, CHUNK)
    seen = []
    sync = MirrorSync(None, mirror, Hub())  # type: ignore[arg-type]  # _apply uses no etcd
    sync.listeners.append(seen.append)
    # The lease expired while the watch was away: a resync's deletes carry the read's
    # revision, the lock's first and the session's a full chunk later.
    events = [
        _deleted(KEYS.kv_holder("lock"), 9),
        *(_deleted(KEYS.kv(f"bulk/{i:04}"), 9) for i in range(CHUNK)),
        _deleted(KEYS.session(session.id), 9),
    ]
    await sync._apply(events, 9)
    assert seen[-1].invalidated == {"lock": 3.0}  # the lock-delay starts
    assert mirror.revision == 9 and not mirror._released and not mirror._ended


def test_a_release_and_a_later_destroy_in_one_batch_stay_a_release() -> None:
    mirror = Mirror(KEYS)
    session = _held_by_one_session(mirror, 0)
    changes = mirror.apply(
        [_deleted(KEYS.kv_holder("lock"), 5), _deleted(KEYS.session(session.id), 6)], 6
    )
    assert changes.invalidated == {}  # two revisions: the holder let go, then left


def test_chunks_pair_by_revision_and_forget_at_the_end_of_the_batch() -> None:
    mirror = Mirror(KEYS)
    session = _held_by_one_session(mirror, 0)
    first = mirror.apply([_deleted(KEYS.kv_holder("lock"), 7)], 0, advance=False)
    assert first.invalidated == {}  # its session's end may be in the next chunk
    second = mirror.apply([_deleted(KEYS.session(session.id), 7)], 0, advance=False)
    assert second.invalidated == {"lock": 3.0}
    mirror.advance([], 7)
    assert not mirror._released and not mirror._ended and mirror.revision == 7
