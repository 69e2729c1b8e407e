"""An upstream's routes: which rule takes a request, and everything that rule asks for. Pure.

A snapshot's upstream may list `routes` (docs/snapshot.md, schema v2). Each has a `name` (its
metric label: bounded, never the raw path), a `match` (`_route_match`) and its policies:
backends with weights (`_split`), timeouts (`_timeout`), retries (`_retry`), fault injection
(`_fault`), mirroring (`_mirror`), header changes (`_header_mods`) and response classes
(`_response_class`). The first route that matches wins ("order", ServiceProfile and
VirtualService); with `precedence: "specificity"` the match entries are ranked the Gateway
API way first (ties keep their order). A request no route takes is answered 404 ("no_route").

An upstream with no `routes` has one implicit route, `default`, that sends everything to the
upstream's own endpoints with no route policy: what schema v1 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._fault import FaultPolicy
from ._header_mods import HeaderMods, build_mods
from ._mirror import MirrorPolicy
from ._response_class import ResponseClass
from ._retry import CONDITIONS, RetryPolicy
from ._retry_budget import BudgetPolicy
from ._rewrite import Rewrite, entry_prefix
from ._route_match import Matcher, RequestView, compile_match, specificity
from ._split import Split, Weighted
from ._timeout import TimeoutPolicy

DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class BackendRef:
    upstream: str
    subset: str = ""

    @property
    def cluster_key(self) -> str:
        return f"{self.upstream}/{self.subset}" if self.subset else self.upstream


@dataclass(frozen=True, slots=True)
class RouteRule:
    name: str
    backends: Split[BackendRef]
    timeout: TimeoutPolicy = TimeoutPolicy()  # noqa: RUF009 - frozen
    retry: RetryPolicy | None = None
    fault: FaultPolicy | None = None
    mirror: MirrorPolicy | None = None
    request_headers: HeaderMods = field(default_factory=HeaderMods)
    response_headers: HeaderMods = field(default_factory=HeaderMods)
    response_classes: tuple[ResponseClass, ...] = ()
    rewrite: Rewrite | None = None  # per match entry: the prefix it matched is in it

    @property
    def single(self) -> BackendRef | None:
        return self.backends.only


@dataclass(frozen=True, slots=True)
class RouteTable:
    entries: tuple[tuple[Matcher, RouteRule], ...]
    budget: BudgetPolicy
    implicit: bool = False  # no routes were configured: the one default route

    def find(self, view: RequestView) -> RouteRule | None:
        for matcher, rule in self.entries:
            if matcher(view):
                return rule
        return None

    @property
    def rules(self) -> list[RouteRule]:
        seen: dict[str, RouteRule] = {}
        for _, rule in self.entries:
            seen.setdefault(rule.name, rule)
        return list(seen.values())

    def backends(self) -> set[BackendRef]:
        """Every backend and mirror the routes name (the runtime builds a cluster for each)."""
        out: set[BackendRef] = set()
        for _, rule in self.entries:
            out.update(rule.backends.items)
            if rule.mirror is not None:
                out.add(BackendRef(rule.mirror.upstream, rule.mirror.subset))
        return out


def _seconds(ms: Any) -> float | None:
    return None if ms is None else ms / 1000.0


def _retry(doc: dict[str, Any] | None, path: str, problems: list[str]) -> RetryPolicy | None:
    if doc is None:
        return None
    on: set[str] = set()
    codes: set[int] = set()
    for i, item in enumerate(doc.get("on", ["gateway-error"])):
        if isinstance(item, int):
            codes.add(item)
        elif item in CONDITIONS:
            on.add(item)
        else:
            problems.append(f"{path}.on[{i}]: {item!r} is not a retry condition")
    return RetryPolicy(
        attempts=int(doc.get("attempts", 2)),
        on=frozenset(on),
        codes=frozenset(codes),
        non_idempotent=bool(doc.get("non_idempotent", False)),
    )


def _fault(doc: dict[str, Any] | None) -> FaultPolicy | None:
    if not doc:
        return None
    delay = doc.get("delay") or {}
    abort = doc.get("abort") or {}
    policy = FaultPolicy(
        delay=delay.get("ms", 0) / 1000.0,
        delay_percent=float(delay.get("percent", 0)),
        abort_status=int(abort.get("status", 0)),
        abort_percent=float(abort.get("percent", 0)),
        abort_grpc=int(abort.get("grpc_status", 0)),
    )
    return policy if policy.active else None


def build_route(
    doc: dict[str, Any], upstream: str, path: str, problems: list[str]
) -> tuple[list[dict[str, Any]], RouteRule | None]:
    """A route document (schema-checked already) to its match entries and rule."""
    backends = []
    for j, b in enumerate(doc.get("backends") or [{"upstream": upstream}]):
        ref = BackendRef(b.get("upstream", upstream), b.get("subset", ""))
        backends.append(Weighted(ref, int(b.get("weight", 1))))
        if not isinstance(b.get("weight", 1), int):
            problems.append(f"{path}.backends[{j}].weight: must be an integer")
    try:
        split = Split(backends)
    except ValueError as exc:
        problems.append(f"{path}.backends: {exc}")
        return [], None
    mirror = None
    if doc.get("mirror"):
        m = doc["mirror"]
        mirror = MirrorPolicy(m["upstream"], m.get("subset", ""), float(m.get("percent", 100)))
    try:
        request_headers = build_mods(doc.get("request_headers"))
        response_headers = build_mods(doc.get("response_headers"))
    except ValueError as exc:
        problems.append(f"{path}: {exc}")
        return [], None
    classes = []
    for i, c in enumerate(doc.get("response_classes", ())):
        low, high = int(c["min"]), int(c.get("max", c["min"]))
        if high < low:
            problems.append(f"{path}.response_classes[{i}]: max {high} is below min {low}")
        classes.append(ResponseClass(low, high, bool(c.get("failure", True))))
    rule = RouteRule(
        name=doc["name"],
        backends=split,
        timeout=TimeoutPolicy(_seconds(doc.get("timeout_ms")), _seconds(doc.get("per_try_ms"))),
        retry=_retry(doc.get("retry"), f"{path}.retry", problems),
        fault=_fault(doc.get("fault")),
        mirror=mirror,
        request_headers=request_headers,
        response_headers=response_headers,
        response_classes=tuple(classes),
    )
    rewrite = doc.get("rewrite")
    if rewrite is not None and len(rewrite) != 1:
        problems.append(f"{path}.rewrite: give exactly one of prefix and full_path")
    elif rewrite:
        full = "full_path" in rewrite
        value = rewrite["full_path"] if full else rewrite["prefix"]
        rule = replace(rule, rewrite=Rewrite(str(value).encode(), full=full))
    return list(doc.get("match") or [{}]), rule


def build_table(
    upstream: str,
    routes: Sequence[dict[str, Any]] | None,
    *,
    precedence: str = "order",
    budget: dict[str, Any] | None = None,
    path: str = "",
    problems: list[str] | None = None,
) -> RouteTable:
    """The table for one upstream; problems (bad regexes, weights summing to 0, names used
    twice) are appended to `problems` (or raised as ValueError when none is given)."""
    own = problems if problems is not None else []
    budget = budget or {}
    policy = BudgetPolicy(
        ratio=float(budget.get("ratio", 0.2)),
        min_per_second=float(budget.get("min_per_second", 10)),
        ttl=budget.get("ttl_ms", 10_000) / 1000.0,
    )
    if routes is None:
        rule = RouteRule(DEFAULT_ROUTE, Split([Weighted(BackendRef(upstream), 1)]))
        table = RouteTable(((compile_match(None), rule),), policy, implicit=True)
    else:
        ranked: list[tuple[tuple[int, ...], int, Matcher, RouteRule]] = []
        names: set[str] = set()
        for i, doc in enumerate(routes):
            where = f"{path}routes[{i}]"
            if doc["name"] in names:
                own.append(f"{where}.name: route {doc['name']!r} is defined twice")
            names.add(doc["name"])
            entries, built = build_route(doc, upstream, where, own)
            if built is None:
                continue
            for j, entry in enumerate(entries):
                try:
                    matcher = compile_match([entry])
                except (ValueError, KeyError) as exc:
                    own.append(f"{where}.match[{j}]: {exc}")
                    continue
                rule = built
                if built.rewrite is not None and not built.rewrite.full:
                    # a prefix rewrite replaces what this entry matched
                    matched, segments = entry_prefix(entry)
                    rewrite = replace(built.rewrite, matched=matched, segments=segments)
                    rule = replace(built, rewrite=rewrite)
                rank = specificity(entry) if precedence == "specificity" else (0,)
                ranked.append((rank, len(ranked), matcher, rule))
        ranked.sort(key=lambda r: (tuple(-x for x in r[0]), r[1]))
        table = RouteTable(tuple((m, r) for _, _, m, r in ranked), policy)
    if problems is None and own:
        raise ValueError("; ".join(own))
    return table
