"""SPIFFE ID parsing and formatting, with property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ca import InvalidIdentity, SpiffeId, is_dns_label

labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
domains = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?\Z")


@given(domains, labels, labels)
def test_format_then_parse_round_trips(domain: str, ns: str, svc: str) -> None:
    sid = SpiffeId(domain, ns, svc)
    assert SpiffeId.parse(sid.uri) == sid
    assert sid.uri == f"spiffe://{domain}/ns/{ns}/svc/{svc}"


@given(st.text(max_size=80))
def test_parse_never_crashes_with_anything_but_invalid_identity(text: str) -> None:
    try:
        sid = SpiffeId.parse(text)
    except InvalidIdentity:
        return
    assert sid.uri == text


@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("http://weft.local/ns/default/svc/web", "spiffe://"),
        ("SPIFFE://weft.local/ns/default/svc/web", "lowercase"),
        ("spiffe://weft.local", "no path"),
        ("spiffe://weft.local/ns/default/web", "/ns/<namespace>/svc/<service>"),
        ("spiffe://weft.local/ns/default/svc/web/extra", "/ns/<namespace>/svc/<service>"),
        ("spiffe://Weft.Local/ns/default/svc/web", "trust domain"),
        ("spiffe://weft.local/ns/Default/svc/web", "namespace"),
        ("spiffe://weft.local/ns/default/svc/web_1", "service"),
        ("spiffe://weft.local/ns/default/svc/web?x=1", "query"),
    ],
)
def test_parse_names_the_problem(uri: str, complaint: str) -> None:
    with pytest.raises(InvalidIdentity, match=complaint.replace("?", r"\?")):
        SpiffeId.parse(uri)


def test_dns_labels() -> None:
    assert is_dns_label("web-1")
    assert not is_dns_label("-web")
    assert not is_dns_label("a" * 64)
    assert not is_dns_label("Web")
