"""Intentions as a sidecar enforces them: which callers, and which of their requests. Pure.

The agent compiles the mesh's intentions whose destination is this proxy's service into the
snapshot's `intentions` (schema v3), already in Consul's evaluation order, with the mesh-wide
default. The first rule whose source matches the caller's verified SPIFFE ID decides alone:

- an L4 rule (`action`) allows or denies the caller outright;
- an L7 rule (`permissions`) decides per request: the first permission whose `http` match
  holds decides, and a request no permission matches gets the default (as in Consul, it does
  not fall through to a lower-precedence rule). An opaque TCP inbound cannot see requests,
  so there an L7 rule refuses the connection.

No rule matching the caller: the default decides. Paths are matched without the query and
after RFC 3986 normalisation (percent-encoded unreserved characters decoded, `.`/`..`
segments removed), so `/public/../admin` is judged as `/admin`, whatever the application
later makes of the raw target. Header values of a repeated header are joined with `,`; an
absent header matches nothing, then `invert` applies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ca import SpiffeId

from ._authz import Decision, _matcher

Header = tuple[bytes, bytes, bytes]  # (lowercase name, name as sent, value): `_h1.Head.headers`

_UNRESERVED = re.compile(r"%([46][1-9a-fA-F]|[57][0-9aA]|3[0-9]|2[dDeE]|5[fF]|7[eE])")


def normalise_path(target: bytes) -> str:
    """The path of a request target as permissions see it (see the module docstring)."""
    raw = target.decode("latin-1")
    if "://" in raw.split("?", 1)[0]:  # absolute form: drop scheme and authority
        after = raw.split("://", 1)[1]
        raw = after[after.find("/") :] if "/" in after else "/"
    path = raw.split("?", 1)[0].split("#", 1)[0] or "/"
    path = _UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), path)
    if not path.startswith("/"):
        return path  # `*` (OPTIONS *): nothing to normalise
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if i == len(segments) - 1:
                out.append("")  # "/a/." is the directory "/a/"
            continue
        out.append(seg)
    return "/" + "/".join(out)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: bytes  # lowercase
    kind: str  # present, exact, prefix, suffix, regex
    value: str
    invert: bool
    pattern: re.Pattern[str] | None = None

    def holds(self, headers: Sequence[Header]) -> bool:
        values = [v for n, _, v in headers if n == self.name]
        if not values:
            found = False
        elif self.kind == "present":
            found = True
        else:
            text = b",".join(values).decode("latin-1")
            if self.kind == "exact":
                found = text == self.value
            elif self.kind == "prefix":
                found = text.startswith(self.value)
            elif self.kind == "suffix":
                found = text.endswith(self.value)
            else:
                assert self.pattern is not None
                found = self.pattern.fullmatch(text) is not None
        return found != self.invert


@dataclass(frozen=True, slots=True)
class HttpMatch:
    path_exact: str | None = None
    path_prefix: str | None = None
    path_regex: re.Pattern[str] | None = None
    methods: frozenset[bytes] = frozenset()
    headers: tuple[HeaderMatch, ...] = ()

    def holds(self, method: bytes, path: str, headers: Sequence[Header]) -> bool:
        if self.path_exact is not None and path != self.path_exact:
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        if self.path_regex is not None and self.path_regex.fullmatch(path) is None:
            return False
        if self.methods and method not in self.methods:
            return False
        return all(h.holds(headers) for h in self.headers)


@dataclass(frozen=True, slots=True)
class Permission:
    allow: bool
    http: HttpMatch


@dataclass(frozen=True, slots=True)
class IntentionRule:
    id: str
    source: str
    allow: bool  # L4 action (unused when permissions are given)
    permissions: tuple[Permission, ...] = ()


class SourcePolicy:
    """What the intentions say about one caller: final, or per request."""

    __slots__ = ("_default", "_rule", "_source", "decision", "permissions")

    def __init__(
        self,
        decision: Decision | None,
        rule: IntentionRule | None = None,
        default: Decision | None = None,
        source: str = "",
    ) -> None:
        self.decision = decision
        self.permissions = rule.permissions if rule else ()
        self._rule = rule
        self._default = default
        self._source = source

    def decide(self, method: bytes, target: bytes, headers: Sequence[Header]) -> Decision:
        if self.decision is not None:
            return self.decision
        assert self._rule is not None and self._default is not None
        path = normalise_path(target)
        for i, perm in enumerate(self.permissions):
            if perm.http.holds(method, path, headers):
                verb = "allows" if perm.allow else "denies"
                return Decision(
                    perm.allow,
                    f"intention {self._rule.id} permission {i} {verb} "
                    f"{method.decode('latin-1')} {path} from {self._source}",
                    f"intention:{self._rule.id}",
                )
        return Decision(
            self._default.allowed,
            f"no permission of intention {self._rule.id} matches "
            f"{method.decode('latin-1')} {path}; the default "
            f"{'allows' if self._default.allowed else 'denies'}",
            "intention-default",
        )


class Intentions:
    """The compiled intentions of one snapshot; `for_source` is cached per caller."""

    def __init__(self, own: SpiffeId, rules: Sequence[IntentionRule], default_allow: bool) -> None:
        self._own = own
        self._rules = [(rule, _matcher(rule.source, own)) for rule in rules]
        self.default = Decision(
            default_allow,
            f"no intention matches; the mesh default {'allows' if default_allow else 'denies'}",
            "intention-default",
        )
        self._cache: dict[tuple[SpiffeId, bool], SourcePolicy] = {}

    def for_source(self, source: SpiffeId, *, http: bool = True) -> SourcePolicy:
        key = (source, http)
        policy = self._cache.get(key)
        if policy is None:
            policy = self._for_source(source, http)
            if len(self._cache) < 10_000:
                self._cache[key] = policy
        return policy

    def _for_source(self, source: SpiffeId, http: bool) -> SourcePolicy:
        for rule, (td, ns, svc) in self._rules:
            if (
                td == source.trust_domain
                and ns in ("*", source.namespace)
                and svc in ("*", source.service)
            ):
                label = f"intention:{rule.id}"
                if not rule.permissions:
                    verb = "allows" if rule.allow else "denies"
                    return SourcePolicy(
                        Decision(rule.allow, f"intention {rule.id} {verb} {source}", label)
                    )
                if not http:
                    return SourcePolicy(
                        Decision(
                            False,
                            f"intention {rule.id} has HTTP permissions; a TCP connection "
                            "cannot meet them",
                            label,
                        )
                    )
                return SourcePolicy(None, rule, self.default, str(source))
        return SourcePolicy(self.default)


def _header(doc: dict[str, Any]) -> HeaderMatch:
    for kind in ("present", "exact", "prefix", "suffix", "regex"):
        if kind in doc:
            value = "" if kind == "present" else str(doc[kind])
            return HeaderMatch(
                name=str(doc["name"]).lower().encode("latin-1"),
                kind=kind,
                value=value,
                invert=bool(doc.get("invert", False)),
                pattern=re.compile(value) if kind == "regex" else None,
            )
    raise ValueError("a header match needs one of present, exact, prefix, suffix, regex")


def build(doc: dict[str, Any], own: SpiffeId, problems: list[str]) -> Intentions:
    """The snapshot's `intentions` (schema-checked already); problems get `intentions.` paths."""
    from ._authz import check_source

    rules: list[IntentionRule] = []
    for i, r in enumerate(doc.get("rules", [])):
        path = f"intentions.rules[{i}]"
        try:
            check_source(r["source"], own)
        except ValueError as exc:
            problems.append(f"{path}.source: {exc}")
            continue
        perms: list[Permission] = []
        for j, p in enumerate(r.get("permissions", [])):
            h = p["http"]
            try:
                match = HttpMatch(
                    path_exact=h.get("path_exact"),
                    path_prefix=h.get("path_prefix"),
                    path_regex=re.compile(h["path_regex"]) if "path_regex" in h else None,
                    methods=frozenset(m.encode("ascii") for m in h.get("methods", ())),
                    headers=tuple(_header(x) for x in h.get("headers", ())),
                )
            except (re.error, ValueError) as exc:
                problems.append(f"{path}.permissions[{j}].http: {exc}")
                continue
            if sum(k in h for k in ("path_exact", "path_prefix", "path_regex")) > 1:
                problems.append(f"{path}.permissions[{j}].http: give at most one path match")
            perms.append(Permission(p["action"] == "allow", match))
        if ("action" in r) == bool(r.get("permissions")):
            problems.append(f"{path}: give action or permissions, not both or neither")
        rules.append(
            IntentionRule(str(r["id"]), r["source"], r.get("action") == "allow", tuple(perms))
        )
    return Intentions(own, rules, doc["default"] == "allow")
