"""Who may have a certificate for what, and for how long."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ca import (
    Adapter,
    InvalidLifetime,
    LeafLifetimes,
    NodeAgent,
    Operator,
    ReadOnly,
    ServiceRef,
    SpiffeId,
    authorize,
)

WEB = SpiffeId("weft.local", "default", "web")
DB = SpiffeId("weft.local", "default", "db")
NODE_A = NodeAgent("node-a", frozenset({ServiceRef("default", "web")}))
NODE_B = NodeAgent("node-b", frozenset({ServiceRef("default", "db")}))


def test_an_agent_gets_certificates_for_services_registered_on_its_node() -> None:
    decision = authorize(NODE_A, WEB)
    assert decision.allowed
    assert "node-a" in decision.reason


def test_node_a_agent_cannot_get_a_certificate_for_a_service_only_on_node_b() -> None:
    assert authorize(NODE_B, DB).allowed
    decision = authorize(NODE_A, DB)
    assert not decision.allowed
    assert "node 'node-a'" in decision.reason
    assert "default/db has none there" in decision.reason
    assert "registered there: default/web" in decision.reason


def test_the_namespace_is_part_of_what_an_agent_may_have() -> None:
    other_ns = SpiffeId("weft.local", "payments", "web")
    assert not authorize(NODE_A, other_ns).allowed


def test_an_agent_with_nothing_registered_gets_nothing() -> None:
    decision = authorize(NodeAgent("empty"), WEB)
    assert not decision.allowed and "registered there: none" in decision.reason


def test_an_adapter_gets_certificates_for_its_sources_services_only() -> None:
    adapter = Adapter("cluster-1", frozenset({ServiceRef("shop", "cart")}))
    assert authorize(adapter, SpiffeId("weft.local", "shop", "cart")).allowed
    decision = authorize(adapter, WEB)
    assert not decision.allowed and "source 'cluster-1'" in decision.reason


def test_the_operator_gets_anything_and_read_only_gets_nothing() -> None:
    assert authorize(Operator(), DB).allowed
    decision = authorize(ReadOnly(), DB)
    assert not decision.allowed and "cannot have certificates signed" in decision.reason


def test_long_lists_of_services_are_abbreviated_in_reasons() -> None:
    many = NodeAgent("big", frozenset(ServiceRef("default", f"s{i}") for i in range(9)))
    assert "and 4 more" in authorize(many, WEB).reason


def test_leaf_lifetimes_default_to_a_day_within_an_hour_and_thirty_days() -> None:
    lifetimes = LeafLifetimes()
    assert lifetimes.resolve(None) == timedelta(hours=24)
    assert lifetimes.resolve(timedelta(hours=1)) == timedelta(hours=1)
    assert lifetimes.resolve(timedelta(days=30)) == timedelta(days=30)
    with pytest.raises(InvalidLifetime, match="59m is outside the allowed 1h - 30d"):
        lifetimes.resolve(timedelta(minutes=59))
    with pytest.raises(InvalidLifetime, match="31d"):
        lifetimes.resolve(timedelta(days=31))


def test_short_lifetimes_need_the_clearly_named_testing_switch() -> None:
    with pytest.raises(InvalidLifetime, match="allow_short_for_testing"):
        LeafLifetimes(default=timedelta(minutes=2))
    lifetimes = LeafLifetimes(default=timedelta(minutes=2), allow_short_for_testing=True)
    assert lifetimes.resolve(None) == timedelta(minutes=2)
    with pytest.raises(InvalidLifetime):
        lifetimes.resolve(timedelta(seconds=10))


def test_the_maximum_can_be_lowered_but_not_raised_past_thirty_days() -> None:
    assert LeafLifetimes(maximum=timedelta(days=2)).maximum == timedelta(days=2)
    with pytest.raises(InvalidLifetime, match="maximum"):
        LeafLifetimes(maximum=timedelta(days=60))
