"""The Mirror and the Hub: etcd events in, topics and wake-ups out (no sockets, no etcd)."""

from __future__ import annotations

import trio
import trio.testing

from registry._fanout import Hub
from registry._keys import Keys
from registry._mirror import CATALOG, HEALTH, Mirror, kv_topic, service_topic
from registry._model import Check, Instance, Status, encode_check, encode_instance
from registry.etcd import Event, KeyValue

KEYS = Keys("/t/")


def put(key: str, value: bytes, rev: int, lease: int = 0) -> Event:
    return Event("PUT", KeyValue(key, value, rev, rev, 1, lease))


def delete(key: str, rev: int) -> Event:
    return Event("DELETE", KeyValue(key, b"", 0, rev, 0, 0))


def inst(service: str, node: str, iid: str) -> Instance:
    return Instance(service=service, id=iid, node=node, port=80)


def test_instances_and_checks_are_indexed_and_bump_their_topics() -> None:
    mirror = Mirror(KEYS)
    mirror.load([], revision=10)
    assert mirror.index(service_topic("web")) == 10  # untouched topics report the load point
    changes = mirror.apply(
        [
            put(KEYS.instance("web", "n1", "w1"), encode_instance(inst("web", "n1", "w1")), 11),
            put(
                KEYS.check("web", "n1", "w1", "c1"),
                encode_check(
                    Check(id="c1", node="n1", service="web", instance="w1", status=Status.PASSING)
                ),
                11,
            ),
        ],
        revision=11,
    )
    assert changes.topics == {service_topic("web"), CATALOG, HEALTH}
    assert mirror.index(service_topic("web")) == 11
    assert mirror.index(service_topic("db")) == 10
    assert mirror.find_instance("n1", "w1").service == "web"
    assert mirror.find_check("n1", "c1").status is Status.PASSING
    assert mirror.instance("web", "n1", "w1").modify_index == 11

    changes = mirror.apply(
        [
            delete(KEYS.instance("web", "n1", "w1"), 12),
            delete(KEYS.check("web", "n1", "w1", "c1"), 12),
        ],
        revision=12,
    )
    assert service_topic("web") in changes.topics
    assert mirror.index(service_topic("web")) == 12  # deletes move the index too
    assert mirror.instances == {} and mirror.checks == {} and mirror.by_node == {}
    assert mirror.find_check("n1", "c1") is None


def test_kv_prefix_index_counts_deletes() -> None:
    mirror = Mirror(KEYS)
    mirror.load([], revision=1)
    mirror.apply([put(KEYS.kv("a/x"), b"1", 5), put(KEYS.kv("b/y"), b"1", 6)], revision=6)
    assert mirror.kv_prefix_index("a/") == 5
    changes = mirror.apply([delete(KEYS.kv("a/x"), 7)], revision=7)
    assert changes.kv_keys == {"a/x"} and kv_topic("a/x") in changes.topics
    assert mirror.kv_prefix_index("a/") == 7
    assert mirror.kv_prefix_index("b/") == 6


def test_unreadable_record_is_skipped_not_fatal() -> None:
    mirror = Mirror(KEYS)
    mirror.load([], revision=1)
    mirror.apply([put(KEYS.instance("web", "n1", "w1"), b"{not json", 2)], revision=2)
    assert mirror.instances == {}


def test_resync_reports_what_changed_while_away() -> None:
    mirror = Mirror(KEYS)
    old = KeyValue(
        KEYS.instance("web", "n1", "w1"), encode_instance(inst("web", "n1", "w1")), 2, 2, 1, 0
    )
    mirror.load([old], revision=2)
    fresh = KeyValue(
        KEYS.instance("db", "n1", "d1"), encode_instance(inst("db", "n1", "d1")), 9, 9, 1, 0
    )
    changes = mirror.resync([fresh], revision=10)
    assert {service_topic("web"), service_topic("db")} <= changes.topics
    assert list(mirror.instances) == ["db"]
    assert mirror.index(service_topic("web")) == 10


def test_instance_index_is_always_at_least_one() -> None:
    mirror = Mirror(KEYS)
    mirror.load([], revision=0)
    assert mirror.index(CATALOG) == 1


async def test_hub_wakes_only_waiters_of_changed_topics() -> None:
    hub = Hub()
    woken: list[str] = []

    async def waiter(name: str, topic: tuple[str, ...]) -> None:
        if await hub.wait((topic,), deadline=trio.current_time() + 60):
            woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "web", service_topic("web"))
        nursery.start_soon(waiter, "db", service_topic("db"))
        await trio.testing.wait_all_tasks_blocked()
        assert hub.waiting == 2
        mirror = Mirror(KEYS)
        mirror.load([], revision=1)
        hub.notify(
            mirror.apply(
                [put(KEYS.instance("web", "n", "i"), encode_instance(inst("web", "n", "i")), 2)], 2
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert woken == ["web"]
        assert hub.waiting == 1
        nursery.cancel_scope.cancel()
    assert hub.waiting == 0  # a cancelled waiter leaves nothing behind


async def test_hub_times_out_and_cleans_up(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    woke = await hub.wait((CATALOG,), kv_prefix="a/", deadline=trio.current_time() + 5)
    assert woke is False
    assert hub.waiting == 0


def test_resync_changes_only_what_differs_and_deletes_what_is_gone() -> None:
    mirror = Mirror(KEYS)
    a, b, c = inst("web", "n1", "a"), inst("web", "n1", "b"), inst("api", "n2", "c")
    mirror.load(
        [
            put(KEYS.instance("web", "n1", "a"), encode_instance(a), 5).kv,
            put(KEYS.instance("web", "n1", "b"), encode_instance(b), 6).kv,
            put(KEYS.kv("x"), b"1", 7).kv,
        ],
        revision=7,
    )
    fresh = [
        put(KEYS.instance("web", "n1", "a"), encode_instance(a), 5).kv,  # unchanged
        put(KEYS.instance("api", "n2", "c"), encode_instance(c), 9).kv,  # new
        put(KEYS.kv("x"), b"2", 10).kv,  # changed
    ]
    events = mirror.resync_events(fresh, 12)
    assert sorted((e.type, e.kv.key) for e in events) == [
        ("DELETE", KEYS.instance("web", "n1", "b")),
        ("PUT", KEYS.kv("x")),
        ("PUT", KEYS.instance("api", "n2", "c")),
    ]
    changes = mirror.resync(fresh, 12)
    assert service_topic("api") in changes.topics and service_topic("web") in changes.topics
    assert set(mirror.instances) == {"web", "api"} and list(mirror.instances["web"]) == [
        ("n1", "a")
    ]
    assert mirror.kv["x"].value == b"2" and mirror.revision == 12


def test_kv_tombstones_past_the_cap_evict_the_oldest_first() -> None:
    mirror = Mirror(KEYS)
    mirror.load([], revision=1)
    from registry import _mirror

    cap = _mirror._TOMBSTONES_KEPT
    mirror.apply([put(KEYS.kv(f"k{i}"), b"v", 2 + i) for i in range(cap + 5)], cap + 10)
    mirror.apply([delete(KEYS.kv(f"k{i}"), cap + 20 + i) for i in range(cap + 5)], 3 * cap)
    # The five oldest tombstones went; the floor is the newest of them.
    assert mirror._tombstone_floor == cap + 20 + 4
    assert mirror.kv_prefix_index("k") == cap + 20 + cap + 4
