"""Consul's ?filter= expression language (registry/_filter.py), on rendered records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry._filter import FilterError, apply, parse

ENTRY = {
    "Node": {"Node": "host-a", "Address": "10.0.0.1", "Meta": {"rack": "r1", "zone id": "a"}},
    "Service": {
        "ID": "web-1",
        "Service": "web",
        "Tags": ["v2", "primary"],
        "Port": 8080,
        "Meta": {"env": "prod"},
        "EnableTagOverride": False,
    },
    "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"Status": "critical"}],
}
FIELDS = ("Node", "Service", "Checks")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Service == "web"', True),
        ("Service.Service == web", True),
        ("Service.Service != web", False),
        ('Service.Tags contains "v2"', True),
        ('"primary" in Service.Tags', True),
        ('"canary" not in Service.Tags', True),
        ("Service.Tags not contains v2", False),
        ("Service.Port == 8080", True),
        ("Service.Port == 8081", False),
        ("Service.EnableTagOverride == false", True),
        ("Service.Meta.env == prod and Node.Meta.rack == r1", True),
        ("Service.Meta.env == dev or Node.Meta.rack == r1", True),
        ('Node.Meta["zone id"] == a', True),
        ("Service.Meta.missing is empty", True),
        ("Service.Meta is not empty", True),
        ("Service.Tags is empty", False),
        ('Service.Service matches "^w.b$"', True),
        ('Node.Node not matches "^db"', True),
        ("Checks.Status == critical", True),  # any element of the list
        ("not (Checks.Status == critical)", False),
        ("not Service.Meta.env == prod or Service.Port == 8080", True),
        ("node.node == host-a", True),  # field names without regard to case
        ("`env` in Service.Meta", True),
        ('Service.Service == "w\\"eb"', False),
    ],
)
def test_expressions_select_as_consul_does(expression: str, expected: bool) -> None:
    assert parse(expression, FIELDS)(ENTRY) is expected


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "empty"),
        ("Service.Service ==", "ends too early"),
        ("Service.Service === web", "unexpected"),
        ("Bogus == 1", "not valid"),
        ("Service.Tags contains", "ends too early"),
        ("(Service.Port == 1", "expected ')'"),
        ("Service.Port == 1 Service.Port == 2", "unexpected"),
        ('Service.Service matches "("', "bad regular expression"),
        ("Service.Meta[env] == x", "quoted key"),
        ("Service.Port is full", "expected 'empty'"),
        ("x" * 5000, "at most"),
        ('Service.Service matches "(a+)+$"', "refused"),
        ("(" * 2000 + "Service.Port == 1" + ")" * 2000, "nested deeper"),
        ("not " * 1000 + "Service.Port == 1", "nested deeper"),
        ('Service.Service matches "(x*)*y"', "refused"),
    ],
)
def test_bad_expressions_are_errors_that_say_why(expression: str, says: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(expression, FIELDS)
    assert says in caught.value.message and caught.value.field == "filter"


def test_apply_keeps_the_matching_records_in_order() -> None:
    records = [{"Port": p, "Tags": ["a"] if p % 2 else []} for p in range(6)]
    assert [r["Port"] for r in apply(records, "Tags contains a", ["Port", "Tags"])] == [1, 3, 5]
    assert apply(records, None, ["Port"]) == records


@given(st.text(max_size=80))
def test_any_text_either_parses_or_is_a_filter_error(text: str) -> None:
    try:
        predicate = parse(text, FIELDS)
    except FilterError:
        return
    assert predicate(ENTRY) in (True, False)
