"""Request bodies are strict JSON: bounded nesting, no NaN/Infinity, no numbers a float or an
int cannot hold, named where they are; nothing else ever escapes the decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.web import HTTPError, Request
from registry.web._json import MAX_DEPTH, JSONRejected, loads, nesting_depth


def request(body: bytes) -> Request:
    return Request("PUT", "/", {}, {}, body, "127.0.0.1")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b'{"Check": {"Timeout": NaN}}', "Check.Timeout", "NaN is not a number JSON allows"),
        (b'{"Port": Infinity}', "Port", "Infinity"),
        (b'{"Checks": [{}, {"TTL": -Infinity}]}', "Checks[1].TTL", "-Infinity"),
        (b'{"Check": {"Interval": 1e999}}', "Check.Interval", "too large"),
        (b'{"Port": 1' + b"0" * 5000 + b"}", "Port", "5001 digits"),
    ],
)
def test_non_finite_numbers_are_refused_where_they_are(body, field, words) -> None:
    with pytest.raises(HTTPError) as caught:
        request(body).json()
    assert caught.value.status == 400
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    assert words in caught.value.message


def test_nesting_deeper_than_the_bound_is_refused_before_parsing() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    with pytest.raises(HTTPError, match=f"deeper than {MAX_DEPTH}") as caught:
        request(deep).json()
    assert caught.value.status == 400
    # A million brackets: refused, not a RecursionError.
    with pytest.raises(JSONRejected):
        loads(b"{" * 1_000_000)


def test_nesting_at_the_bound_is_fine_and_brackets_in_strings_do_not_count() -> None:
    at_bound = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert nesting_depth(at_bound) == MAX_DEPTH
    loads(at_bound)
    assert loads(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[["}') == {"a": "[" * 38 + '"[['}


def test_repeated_key_hiding_a_nan_is_still_refused() -> None:
    with pytest.raises(JSONRejected, match="NaN"):
        loads(b'{"a": NaN, "a": 1}')


def test_plain_documents_parse_as_json_does() -> None:
    assert loads(b'{"a": [1, 2.5, -3e2, true, null, "x"]}') == {
        "a": [1, 2.5, -300.0, True, None, "x"]
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"\xff\xfe{}", "not UTF-8"), (b'{"a": 1', "not valid JSON"), (b"", "empty")],
)
def test_undecodable_bodies_are_400(body, words) -> None:
    with pytest.raises(HTTPError, match=words) as caught:
        request(body).json()
    assert caught.value.status == 400


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_rejected_never_anything_else(body) -> None:
    try:
        loads(body)
    except JSONRejected:
        pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_any_json_python_writes_parses_or_is_rejected_for_a_non_finite_number(doc) -> None:
    import json

    body = json.dumps(doc).encode()
    try:
        assert loads(body) == json.loads(body)
    except JSONRejected as exc:
        assert any(word in exc.message for word in ("NaN", "Infinity", "deeper"))
