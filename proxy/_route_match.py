"""Which requests a route takes: a boolean match tree over method, path, headers and query. Pure.

A route's `match` is a list of entries, ORed; the fields of one entry are ANDed (Istio's
VirtualService and Gateway API's HTTPRoute work this way). `all`, `any` and `not` nest
entries, so ServiceProfile's boolean conditions fit too. An absent or empty list matches
every request.

    {"method": "GET"}                                    (or a list: ["GET", "HEAD"])
    {"path": {"exact": "/a"}}                            the path only, never the query
    {"path": {"prefix": "/a"}}                           string prefix: /a, /ab, /a/b
    {"path": {"segment_prefix": "/a"}}                   whole segments: /a, /a/b, not /ab
    {"path": {"regex": "/books/[0-9]+"}}                 anchored: the whole path must match
    {"headers": [{"name": "x-canary", "exact": "1"}]}    also prefix, regex, present, absent
    {"query": [{"name": "debug", "present": true}]}      the same operators, on ?name=value
    {"all": [...]}, {"any": [...]}, {"not": {...}}

`compile_match` turns the JSON form into one closure over a `RequestView`; `specificity`
ranks entries the way Gateway API orders them (exact path, longest prefix, method, most
headers, most query parameters) for tables that ask for it. Regexes are Python `re`,
matched with `fullmatch` (the registry validates them with the same engine).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from ._h1 import Head

MAX_REGEX_LENGTH = 1024


class RequestView:
    """The parts of a request head a match looks at, split once and only when asked."""

    __slots__ = ("_query", "head", "path", "raw_query")

    def __init__(self, head: Head, target: bytes | None = None) -> None:
        self.head = head
        raw = (head.target if target is None else target).decode("latin-1")
        path, _, query = raw.partition("?")
        self.path = path.partition("#")[0] or "/"
        self.raw_query = query
        self._query: dict[str, list[str]] | None = None

    @property
    def method(self) -> str:
        return self.head.method.decode("latin-1")

    def header_values(self, name: bytes) -> list[str]:
        return [v.decode("latin-1") for n, _, v in self.head.headers if n == name]

    def query_values(self, name: str) -> list[str]:
        if self._query is None:
            self._query = {}
            for key, value in parse_qsl(self.raw_query, keep_blank_values=True):
                self._query.setdefault(key, []).append(value)
        return self._query.get(name, [])


Matcher = Callable[[RequestView], bool]


def _always(_: RequestView) -> bool:
    return True


def compile_regex(text: str) -> re.Pattern[str]:
    """The pattern, or ValueError naming what is wrong with it."""
    if len(text) > MAX_REGEX_LENGTH:
        raise ValueError(f"a regex may have at most {MAX_REGEX_LENGTH} characters")
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regex: {exc}") from None


def _value_test(spec: dict[str, Any]) -> Callable[[list[str]], bool]:
    """One header or query parameter test over all of the values present."""
    if spec.get("absent"):
        return lambda values: not values
    if "exact" in spec:
        want = spec["exact"]
        return lambda values: want in values
    if "prefix" in spec:
        prefix = spec["prefix"]
        return lambda values: any(v.startswith(prefix) for v in values)
    if "regex" in spec:
        pattern = compile_regex(spec["regex"])
        return lambda values: any(pattern.fullmatch(v) for v in values)
    return lambda values: bool(values)  # present (or no operator: presence)


def _path_test(spec: dict[str, Any]) -> Matcher:
    if "exact" in spec:
        exact = spec["exact"]
        return lambda r: r.path == exact
    if "prefix" in spec:
        prefix = spec["prefix"]
        return lambda r: r.path.startswith(prefix)
    if "segment_prefix" in spec:
        base = spec["segment_prefix"].rstrip("/")
        if not base:
            return _always
        slash = base + "/"
        return lambda r: r.path == base or r.path.startswith(slash)
    if "regex" in spec:
        pattern = compile_regex(spec["regex"])
        return lambda r: pattern.fullmatch(r.path) is not None
    raise ValueError("a path match needs one of exact, prefix, segment_prefix, regex")


def _header_test(name: bytes, spec: dict[str, Any]) -> Matcher:
    """Headers are compared as bytes (latin-1, as they came): no decoding per request."""
    if spec.get("absent"):
        return lambda r: not any(n == name for n, _, _ in r.head.headers)
    if "exact" in spec:
        want = spec["exact"].encode("latin-1")
        return lambda r: any(n == name and v == want for n, _, v in r.head.headers)
    if "prefix" in spec:
        prefix = spec["prefix"].encode("latin-1")
        return lambda r: any(n == name and v.startswith(prefix) for n, _, v in r.head.headers)
    if "regex" in spec:
        check = _value_test(spec)
        return lambda r: check(r.header_values(name))
    return lambda r: any(n == name for n, _, _ in r.head.headers)


def _query_test(name: str, check: Callable[[list[str]], bool]) -> Matcher:
    return lambda r: check(r.query_values(name))


def _entry(entry: dict[str, Any]) -> Matcher:
    tests: list[Matcher] = []
    if "method" in entry:
        methods = entry["method"]
        wanted = frozenset(
            m.encode("ascii") for m in ([methods] if isinstance(methods, str) else methods)
        )
        tests.append(lambda r: r.head.method in wanted)
    if "path" in entry:
        tests.append(_path_test(entry["path"]))
    for spec in entry.get("headers", ()):
        tests.append(_header_test(spec["name"].lower().encode("latin-1"), spec))
    for spec in entry.get("query", ()):
        tests.append(_query_test(spec["name"], _value_test(spec)))
    if "all" in entry:
        parts = [_entry(e) for e in entry["all"]]
        tests.append(lambda r: all(p(r) for p in parts))
    if "any" in entry:
        alternatives = [_entry(e) for e in entry["any"]]
        tests.append(lambda r: any(p(r) for p in alternatives))
    if "not" in entry:
        inner = _entry(entry["not"])
        tests.append(lambda r: not inner(r))
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda r: first(r) and second(r)
    return lambda r: all(t(r) for t in tests)


def compile_match(entries: Sequence[dict[str, Any]] | None) -> Matcher:
    """One matcher for a list of entries (ORed); None or [] matches everything.

    Raises ValueError for a bad regex or a path test without an operator.
    """
    if not entries:
        return _always
    compiled = [_entry(e) for e in entries]
    if len(compiled) == 1:
        return compiled[0]
    return lambda r: any(m(r) for m in compiled)


def specificity(entry: dict[str, Any] | None) -> tuple[int, int, int, int, int]:
    """Gateway API's precedence as a sort key (larger first): an exact path, then the longest
    prefix (a regex ranks below every prefix), then a method, then the number of header
    matches, then of query matches."""
    entry = entry or {}
    path = entry.get("path") or {}
    exact = 1 if "exact" in path else 0
    if "exact" in path:
        length = len(path["exact"])
    elif "prefix" in path or "segment_prefix" in path:
        length = len(path.get("prefix", path.get("segment_prefix", "")))
    else:
        length = -1 if "regex" in path else 0
    return (
        exact,
        length,
        1 if "method" in entry else 0,
        len(entry.get("headers", ())),
        len(entry.get("query", ())),
    )
