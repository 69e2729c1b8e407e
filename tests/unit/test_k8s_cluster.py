"""ClusterState and the diff: which registry services a change touches, and what to write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from k8s_adapter._cluster import ClusterState
from k8s_adapter._diff import plan
from k8s_adapter._entry import Entry
from k8s_adapter._naming import Namer
from k8s_adapter._objects import ENDPOINT_SLICES, PODS, SERVICES
from k8s_adapter._selection import Selection

from .test_k8s_mapping import endpoint, eps, pod, service


def state() -> ClusterState:
    return ClusterState(
        Selection.of((), ("kube-system",), True), Namer("{name}-{namespace}", "c1"), cluster="c1"
    )


def test_events_in_any_order_converge_and_name_only_what_they_touch() -> None:
    s = state()
    assert (
        s.apply(ENDPOINT_SLICES, "ADDED", eps("web-1", [endpoint("10.0.0.1", "web-a")])) == set()
    )  # the slice's Service is not known yet
    assert s.apply(PODS, "ADDED", pod("web-a", labels={"v": "1"})) == set()
    assert s.apply(SERVICES, "ADDED", service()) == {"web-shop"}
    (entry,) = s.entries("web-shop").values()
    assert dict(entry.meta)["v"] == "1"

    s.apply(SERVICES, "ADDED", service(name="api"))
    assert s.apply(PODS, "MODIFIED", pod("web-a", labels={"v": "2"})) == {"web-shop"}
    assert dict(next(iter(s.entries("web-shop").values())).meta)["v"] == "2"
    assert s.apply(PODS, "ADDED", pod("unrelated")) == set()
    assert s.apply(ENDPOINT_SLICES, "DELETED", eps("web-1", [])) == {"web-shop"}
    assert s.entries("web-shop") == {}
    assert s.names() == {"web-shop", "api-shop"}


def test_deselecting_or_renaming_a_service_marks_old_and_new_names() -> None:
    s = state()
    s.apply(SERVICES, "ADDED", service())
    s.apply(ENDPOINT_SLICES, "ADDED", eps("web-1", [endpoint("10.0.0.1", "web-a")]))
    renamed = service(annotations={"weft.io/service-name": "storefront"})
    assert s.apply(SERVICES, "MODIFIED", renamed) == {"web-shop", "storefront"}
    assert s.entries("web-shop") == {} and len(s.entries("storefront")) == 1
    off = service(annotations={"weft.io/sync": "false"})
    assert s.apply(SERVICES, "MODIFIED", off) == {"storefront"}
    assert s.names() == set()


def test_a_slice_moving_to_another_service_marks_both() -> None:
    s = state()
    s.apply(SERVICES, "ADDED", service(name="a"))
    s.apply(SERVICES, "ADDED", service(name="b"))
    s.apply(ENDPOINT_SLICES, "ADDED", eps("x", [endpoint("10.0.0.1", "p")], service_name="a"))
    moved = eps("x", [endpoint("10.0.0.1", "p")], service_name="b")
    assert s.apply(ENDPOINT_SLICES, "MODIFIED", moved) == {"a-shop", "b-shop"}
    assert s.entries("a-shop") == {} and len(s.entries("b-shop")) == 1


def test_two_services_claiming_one_name_the_first_wins_then_hands_over() -> None:
    s = ClusterState(Selection(), Namer("{name}", "c1"), cluster="c1")
    s.apply(SERVICES, "ADDED", service(ns="b", name="web"))
    s.apply(SERVICES, "ADDED", service(ns="a", name="web"))
    assert s.owner("web") == ("a", "web")
    assert s.apply(SERVICES, "DELETED", service(ns="a", name="web")) == {"web"}
    assert s.owner("web") == ("b", "web")


def test_relist_keeps_unreadable_objects_and_drops_vanished_ones() -> None:
    s = state()
    s.replace(SERVICES, [service()], [])
    s.replace(PODS, [pod("web-a")], [])
    s.replace(ENDPOINT_SLICES, [eps("web-1", [endpoint("10.0.0.1", "web-a")])], [])
    assert len(s.entries("web-shop")) == 1
    # The slice came back unreadable in the next list: keep what we knew.
    assert s.replace(ENDPOINT_SLICES, [], [("shop", "web-1")]) == set()
    assert len(s.entries("web-shop")) == 1
    # An unchanged relist touches nothing; a vanished slice is gone.
    assert s.replace(SERVICES, [service()], []) == set()
    assert s.replace(ENDPOINT_SLICES, [], []) == {"web-shop"}
    assert s.entries("web-shop") == {}


def _entry(i: int, service: str = "svc", status: str = "passing", port: int = 80) -> Entry:
    return Entry(
        service=service,
        id=f"id-{i}",
        node="n",
        namespace="default",
        address=f"10.0.0.{i}",
        node_address=f"10.0.0.{i}",
        port=port,
        status=status,
    )


def test_plan_writes_only_differences_upserts_first() -> None:
    current = {e.key: e for e in (_entry(1), _entry(2), _entry(3))}
    wanted = {e.key: e for e in (_entry(1), _entry(2, status="critical"), _entry(4))}
    todo = plan(wanted, current)
    assert [e.id for e in todo.upserts] == ["id-2", "id-4"]
    assert todo.deletes == [("svc", "n", "id-3")]
    batches = list(todo.batches(2))
    assert [len(b) for b in batches] == [2, 1]
    assert batches[0].upserts and batches[1].deletes == [("svc", "n", "id-3")]
    assert not plan(wanted, wanted)


def test_an_id_moving_to_another_service_is_not_also_deleted() -> None:
    old = _entry(1, service="web-shop")
    new = _entry(1, service="storefront")
    todo = plan({new.key: new}, {old.key: old})
    assert todo.upserts == [new] and todo.deletes == []


@given(
    st.dictionaries(st.integers(0, 30), st.sampled_from(["passing", "critical"])),
    st.dictionaries(st.integers(0, 30), st.sampled_from(["passing", "critical"])),
    st.integers(1, 7),
)
def test_applying_the_plan_in_batches_yields_the_wanted_state(wanted_raw, current_raw, size):
    wanted = {e.key: e for e in (_entry(i, status=s) for i, s in wanted_raw.items())}
    current = {e.key: e for e in (_entry(i, status=s) for i, s in current_raw.items())}
    registry = dict(current)
    writes = 0
    for batch in plan(wanted, current).batches(size):
        writes += 1
        for entry in batch.upserts:
            registry[entry.key] = entry
        for key in batch.deletes:
            del registry[key]
    assert registry == wanted
    changed = sum(1 for k in wanted if current.get(k) != wanted[k]) + sum(
        1 for k in current if k not in wanted
    )
    assert writes == -(-changed // size)  # batches, not entries
