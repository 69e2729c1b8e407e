"""Pure rules: check status table, request decoding, validation, Consul input, tokens."""

from __future__ import annotations

import pytest

from registry._acl import Authorizer, Role, hash_secret, new_token
from registry._batcher import _overlaps
from registry._consul_input import registration_from_consul
from registry._decode import F, decode, parse_duration
from registry._errors import Forbidden, InvalidInput
from registry._health import Streak, critical_too_long, next_status, ttl_expired
from registry._model import Check, Instance, Status, worst
from registry._validate import CheckRules
from registry.etcd import Delete, Put

BASE = Check(id="c", node="n", service="s", instance="i", type="http", interval=1)


@pytest.mark.parametrize(
    ("start", "results", "thresholds", "expected"),
    [
        (Status.CRITICAL, [Status.PASSING], {}, Status.PASSING),
        (
            Status.CRITICAL,
            [Status.PASSING, Status.PASSING],
            {"success_before_passing": 3},
            Status.CRITICAL,
        ),
        (Status.CRITICAL, [Status.PASSING] * 3, {"success_before_passing": 3}, Status.PASSING),
        (Status.PASSING, [Status.CRITICAL], {}, Status.CRITICAL),
        (
            Status.PASSING,
            [Status.CRITICAL] * 2,
            {"failures_before_critical": 3, "failures_before_warning": 1},
            Status.WARNING,
        ),
        (Status.PASSING, [Status.CRITICAL] * 3, {"failures_before_critical": 3}, Status.CRITICAL),
        (Status.PASSING, [Status.WARNING], {}, Status.WARNING),
        (
            Status.PASSING,
            [Status.CRITICAL, Status.PASSING, Status.CRITICAL],
            {"failures_before_critical": 2},
            Status.PASSING,
        ),
    ],
)
def test_status_table(start, results, thresholds, expected) -> None:
    import dataclasses

    check = dataclasses.replace(BASE, status=start, **thresholds)
    streak = Streak()
    for result in results:
        status, streak = next_status(check, result, streak)
        check = dataclasses.replace(check, status=status)
    assert check.status is expected


def test_ttl_and_deregister_critical_after() -> None:
    import dataclasses

    ttl = dataclasses.replace(BASE, type="ttl", ttl=10, status=Status.PASSING, expires_at=100)
    assert not ttl_expired(ttl, 99.9) and ttl_expired(ttl, 100.1)
    crit = dataclasses.replace(
        BASE, status=Status.CRITICAL, status_since=50, deregister_critical_after=60
    )
    assert not critical_too_long(crit, 109) and critical_too_long(crit, 110)


def test_worst_status() -> None:
    assert worst([]) is Status.PASSING
    assert worst([Status.PASSING, Status.WARNING]) is Status.WARNING
    assert worst([Status.WARNING, Status.CRITICAL, Status.PASSING]) is Status.CRITICAL


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), (5, 5), ("1.5s", 1.5)],
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["s", "10 s", "-1s", "1d", ""])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_decode_folds_case_only_when_asked() -> None:
    shape = {"Name": F("str"), "Port": F("int")}
    assert decode({"name": "a", "PORT": 1}, shape, fold_case=True) == {"Name": "a", "Port": 1}
    with pytest.raises(InvalidInput, match="name: unknown field"):
        decode({"name": "a"}, shape)
    with pytest.raises(InvalidInput, match="given twice"):
        decode({"name": "a", "Name": "b"}, shape, fold_case=True)
    with pytest.raises(InvalidInput, match="Port: expected a whole number"):
        decode({"Port": 1.5}, shape)
    with pytest.raises(InvalidInput, match="Port: expected a number, got a boolean"):
        decode({"Port": True}, shape)


def test_consul_check_ids_follow_consul() -> None:
    one = registration_from_consul(
        {"Name": "web", "ID": "w1", "Check": {"TTL": "5s"}},
        node="n",
        node_address="",
        rules=CheckRules(),
    )
    assert [c.id for c in one.checks] == ["service:w1"]
    two = registration_from_consul(
        {
            "name": "web",
            "id": "w1",
            "check": {"ttl": "5s"},
            "checks": [{"tcp": "h:1", "interval": "10s"}],
        },
        node="n",
        node_address="",
        rules=CheckRules(),
    )
    assert [c.id for c in two.checks] == ["service:w1:1", "service:w1:2"]
    assert two.checks[1].type == "tcp" and two.checks[1].interval == 10


def test_consul_clamps_like_consul() -> None:
    reg = registration_from_consul(
        {
            "Name": "web",
            "Check": {
                "HTTP": "http://h/",
                "Interval": "100ms",
                "DeregisterCriticalServiceAfter": "5s",
            },
        },
        node="n",
        node_address="",
        rules=CheckRules(),
    )
    assert reg.checks[0].interval == 1.0
    assert reg.checks[0].deregister_critical_after == 60.0


def test_token_roles() -> None:
    _, agent = new_token(Role.AGENT, node="a", now=0)
    _, adapter = new_token(Role.ADAPTER, source="k8s/x", now=0)
    _, reader = new_token(Role.READ, now=0)
    auth = Authorizer(anonymous_reads=False)
    mine = Instance(service="s", id="i", node="a")
    theirs = Instance(service="s", id="i", node="b")
    auth.write_instance(agent, mine)
    with pytest.raises(Forbidden, match="bound to node 'a'"):
        auth.write_instance(agent, theirs)
    with pytest.raises(Forbidden, match="source 'k8s/x'"):
        auth.write_instance(adapter, theirs)
    with pytest.raises(Forbidden):
        auth.write_instance(reader, mine)
    with pytest.raises(Forbidden):
        auth.read(None)
    Authorizer(anonymous_reads=True).read(None)
    with pytest.raises(InvalidInput, match="node"):
        new_token(Role.AGENT, now=0)
    secret, token = new_token("operator", now=0)
    assert token.secret_hash == hash_secret(secret) and secret not in token.to_json().decode()


def test_batch_overlap_detection() -> None:
    from registry._batcher import Write

    a = Write([], [Put("/p/a", b"")]).ranges()
    b = Write([], [Put("/p/b", b"")]).ranges()
    prefix = Write([], [Delete("/p/", prefix=True)]).ranges()
    assert not _overlaps(a, b)
    assert _overlaps(a, a)
    assert _overlaps(prefix, b)
