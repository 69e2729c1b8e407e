"""The importers' rules that a golden file does not show on its own: the naming rule, Linkerd's
regex anchoring, and hostile or malformed documents refused by name, never a crash."""

from __future__ import annotations

import pytest

from registry.importers import convert, is_foreign, service_of


@pytest.mark.parametrize(
    "host",
    [
        "reviews.default.svc.cluster.local",
        "reviews.default",
        "reviews",
        "reviews:9080",
        "Reviews.prod.svc.example.org:80",
    ],
)
def test_kubernetes_names_map_to_the_first_label(host: str) -> None:
    assert service_of(host) == "reviews"


@pytest.mark.parametrize("host", ["*", "*.example.com", "", None, 7, "-bad"])
def test_names_that_are_no_service_map_to_none(host: object) -> None:
    assert service_of(host) is None


def test_linkerd_path_regex_anchors_are_stripped_because_weft_matches_the_whole_path() -> None:
    doc = {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "books"},
        "spec": {
            "routes": [
                {"name": "a", "condition": {"pathRegex": " ^/books/\\d+$ "}},
                {"name": "b", "condition": {"pathRegex": "/price\\$"}},
            ]
        },
    }
    rules = convert([doc]).docs[0]["spec"]["rules"]
    assert rules[0]["match"] == [{"path": {"regex": "/books/\\d+"}}]
    assert rules[1]["match"] == [{"path": {"regex": "/price\\$"}}]  # an escaped $ stays


@pytest.mark.parametrize(
    "spec",
    [
        {"http": "nope", "hosts": ["a"]},
        {"http": [{"route": [{"destination": "x"}]}], "hosts": ["a"]},
        {"http": [{"match": [{"headers": ["x"]}]}], "hosts": ["a"]},
        {"http": [{"retries": {"attempts": "many"}}], "hosts": ["a"]},
        {"hosts": "a", "http": [{}]},
    ],
)
def test_malformed_virtual_services_are_refused_by_name_not_crashed_on(spec: object) -> None:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    result = convert([doc])
    assert (
        result.problems
        or result.docs == []
        or all(d["apiVersion"] == "weft.dev/v1" for d in result.docs)
    )
    assert all(p.startswith("VirtualService bad: ") for p in result.problems)


def test_weft_documents_pass_through_unchanged_and_unknown_kinds_are_left_to_the_checks() -> None:
    weft_doc = {
        "apiVersion": "weft.dev/v1",
        "kind": "Subset",
        "metadata": {"name": "x"},
        "spec": {"service": "x", "subset": "v1", "tags": ["v1"]},
    }
    other = {"apiVersion": "v1", "kind": "ConfigMap"}
    assert not is_foreign(weft_doc) and not is_foreign(other)
    assert convert([weft_doc, other]).docs == [weft_doc, other]
