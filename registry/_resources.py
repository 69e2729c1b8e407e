"""Weft's traffic resources (`apiVersion: weft.dev/v1`): their shape and their rules. Pure.

Three kinds, each stored under `config/<kind>/<name>` (see docs/traffic.md):

    Route            how requests to one service are routed: ordered rules with a match tree,
                     weighted backends (services, or subsets of them), timeouts, retries,
                     fault injection, mirroring, header changes, response classes
    ServiceDefaults  a service's own policy (metadata.name is the service): timeout, retries,
                     retry budget, response classes; Route rules without their own inherit it
    Subset           a named set of a service's instances, chosen by tags and/or meta

`validate_all` checks a batch of documents as a whole and returns every problem, each naming
the document (by index) and the field path, e.g.
`resources[2] (Route reviews): spec.rules[0].match[0].path.regex: '((' is not a valid regex`.
Nothing of a batch is stored unless all of it is valid. The field names are chosen so that
ServiceProfile, VirtualService + DestinationRule, Gateway API HTTPRoute and SMI TrafficSplit
translate into these kinds without loss (the mapping is in docs/traffic.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._decode import parse_duration
from ._validate import is_dns_label

API_VERSION = "weft.dev/v1"
KINDS = ("Route", "ServiceDefaults", "Subset")

MAX_RULES = 64
MAX_MATCHES = 16
MAX_FIELDS = 16  # headers or query parameters per match entry
MAX_DEPTH = 4  # nested all/any/not
MAX_BACKENDS = 16
MAX_WEIGHT = 10_000
MAX_REGEX = 1024
MAX_TIMEOUT = 3600.0
MAX_ATTEMPTS = 10

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_PROTECTED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
RETRY_CONDITIONS = ("5xx", "gateway-error", "timeout", "reset")


@dataclass
class Problems:
    """Problems found so far, each `path: message`."""

    items: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


Checker = Callable[[Any, str, Problems], object]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _object(
    value: Any,
    path: str,
    out: Problems,
    fields: Mapping[str, Checker],
    required: Sequence[str] = (),
) -> bool:
    if not isinstance(value, dict):
        out.add(path, f"expected an object, got {_type_name(value)}")
        return False
    for name in required:
        if name not in value:
            out.add(f"{path}.{name}", "is required")
    for name, item in value.items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            out.add(f"{path}.{name}", f"unknown field (known fields: {known})")
            continue
        fields[name](item, f"{path}.{name}", out)
    return True


def _string(pattern: re.Pattern[str] | None = None, what: str = "") -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if not isinstance(value, str):
            out.add(path, f"expected a string, got {_type_name(value)}")
        elif pattern is not None and not pattern.match(value):
            out.add(path, f"{value[:80]!r} is not {what}")

    return check


def _service(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str) or not is_dns_label(value):
        out.add(path, f"{value!r} is not a service name (a DNS label: 1-63 of a-z, 0-9, '-')")


def _number(low: float, high: float, *, integer: bool = False) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.add(path, f"expected a number, got {_type_name(value)}")
        elif isinstance(value, float) and not math.isfinite(value):
            out.add(path, f"{value} is not a finite number")
        elif integer and not float(value).is_integer():
            out.add(path, f"expected a whole number, got {value}")
        elif not low <= value <= high:
            out.add(path, f"{value} is outside {low:g}..{high:g}")

    return check


def _boolean(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, bool):
        out.add(path, f"expected true or false, got {_type_name(value)}")


def _duration(value: Any, path: str, out: Problems) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        out.add(path, f"expected a duration such as '300ms' or '10s', got {_type_name(value)}")
        return
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        out.add(path, str(exc))
        return
    if not 0.001 <= seconds <= MAX_TIMEOUT:
        out.add(path, f"{value!r} is outside 1ms..1h")


def _regex(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str):
        out.add(path, f"expected a string, got {_type_name(value)}")
        return
    if len(value) > MAX_REGEX:
        out.add(path, f"a regex may have at most {MAX_REGEX} characters")
        return
    try:
        re.compile(value)
    except re.error as exc:
        out.add(path, f"{value!r} is not a valid regex: {exc}")


def _list(item: Checker, most: int, *, least: int = 0) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if not isinstance(value, list):
            out.add(path, f"expected a list, got {_type_name(value)}")
            return
        if len(value) > most:
            out.add(path, f"at most {most} items, not {len(value)}")
        if len(value) < least:
            out.add(path, f"needs at least {least} item{'s' if least > 1 else ''}")
        for i, v in enumerate(value):
            item(v, f"{path}[{i}]", out)

    return check


def _one_of(value: dict[str, Any], path: str, out: Problems, operators: Sequence[str]) -> None:
    given = [op for op in operators if op in value]
    if len(given) != 1:
        out.add(path, f"needs exactly one of {', '.join(operators)} (got {len(given)})")


# -- matches --------------------------------------------------------------------------------

_PATH_OPS = ("exact", "prefix", "segmentPrefix", "regex")
_VALUE_OPS = ("exact", "prefix", "regex", "present", "absent")


def _path(value: Any, path: str, out: Problems) -> None:
    def starts_with_slash(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, str) or not v.startswith("/"):
            o.add(p, f"{v!r} must be a string starting with '/'")

    fields = {
        "exact": starts_with_slash,
        "prefix": starts_with_slash,
        "segmentPrefix": starts_with_slash,
        "regex": _regex,
    }
    if _object(value, path, out, fields):
        _one_of(value, path, out, _PATH_OPS)


def _value_match(header: bool) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        name_check = _string(_TOKEN, "a header name") if header else _string()
        fields = {
            "name": name_check,
            "exact": _string(),
            "prefix": _string(),
            "regex": _regex,
            "present": _boolean,
            "absent": _boolean,
        }
        if _object(value, path, out, fields, required=("name",)):
            _one_of(value, path, out, _VALUE_OPS)
            for flag in ("present", "absent"):
                if value.get(flag) is False:
                    out.add(f"{path}.{flag}", "only 'true' is meaningful here")

    return check


def _method(value: Any, path: str, out: Problems) -> None:
    methods = [value] if isinstance(value, str) else value
    if not isinstance(methods, list) or not methods:
        out.add(path, "expected a method such as 'GET' or a list of them")
        return
    for i, m in enumerate(methods):
        if not isinstance(m, str) or not _METHOD.match(m):
            where = path if isinstance(value, str) else f"{path}[{i}]"
            out.add(where, f"{m!r} is not an HTTP method (upper case, such as GET)")


def _match_entry(depth: int) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if depth > MAX_DEPTH:
            out.add(path, f"matches nest at most {MAX_DEPTH} deep")
            return
        nested = _match_entry(depth + 1)
        fields: dict[str, Checker] = {
            "method": _method,
            "path": _path,
            "headers": _list(_value_match(True), MAX_FIELDS),
            "query": _list(_value_match(False), MAX_FIELDS),
            "all": _list(nested, MAX_MATCHES, least=1),
            "any": _list(nested, MAX_MATCHES, least=1),
            "not": nested,
        }
        _object(value, path, out, fields)

    return check


# -- policies --------------------------------------------------------------------------------


def _retries(value: Any, path: str, out: Problems) -> None:
    def condition(v: Any, p: str, o: Problems) -> None:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 100 <= v <= 599:
                o.add(p, f"{v} is not an HTTP status (100..599)")
        elif v not in RETRY_CONDITIONS:
            o.add(p, f"{v!r} is not a retry condition ({', '.join(RETRY_CONDITIONS)}, or a code)")

    fields = {
        "attempts": _number(0, MAX_ATTEMPTS, integer=True),
        "retryOn": _list(condition, 16, least=1),
        "nonIdempotent": _boolean,
    }
    _object(value, path, out, fields)


def _percent(value: Any, path: str, out: Problems) -> None:
    _number(0, 100)(value, path, out)


def _fault(value: Any, path: str, out: Problems) -> None:
    delay: dict[str, Checker] = {"fixed": _duration, "percent": _percent}
    abort: dict[str, Checker] = {"status": _number(200, 599, integer=True), "percent": _percent}
    fields: dict[str, Checker] = {
        "delay": lambda v, p, o: _object(v, p, o, delay, required=("fixed", "percent")),
        "abort": lambda v, p, o: _object(v, p, o, abort, required=("status", "percent")),
    }
    if _object(value, path, out, fields) and not value:
        out.add(path, "give a delay, an abort or both")


def _backend(value: Any, path: str, out: Problems) -> None:
    fields = {
        "service": _service,
        "subset": _string(_NAME, "a subset name"),
        "weight": _number(0, MAX_WEIGHT, integer=True),
    }
    _object(value, path, out, fields, required=("service",))


def _mirror(value: Any, path: str, out: Problems) -> None:
    fields = {"service": _service, "subset": _string(_NAME, "a subset name"), "percent": _percent}
    _object(value, path, out, fields, required=("service",))


def _header_changes(value: Any, path: str, out: Problems) -> None:
    def name_ok(name: Any, p: str, o: Problems) -> bool:
        if not isinstance(name, str) or not _TOKEN.match(name):
            o.add(p, f"{name!r} is not a header name")
            return False
        lowered = name.lower()
        if lowered in _PROTECTED_HEADERS or lowered.startswith("x-weft-"):
            o.add(p, f"header {name!r} is managed by the proxy and cannot be changed")
            return False
        return True

    def values(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, dict):
            o.add(p, f"expected an object of header: value, got {_type_name(v)}")
            return
        for name, item in v.items():
            if name_ok(name, f"{p}.{name}", o) and (
                not isinstance(item, str) or "\r" in item or "\n" in item
            ):
                o.add(f"{p}.{name}", "a header value must be a string without CR or LF")

    def names(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, list):
            o.add(p, f"expected a list of header names, got {_type_name(v)}")
            return
        for i, name in enumerate(v):
            name_ok(name, f"{p}[{i}]", o)

    _object(value, path, out, {"set": values, "add": values, "remove": names})


def _response_class(value: Any, path: str, out: Problems) -> None:
    status = {"min": _number(100, 599, integer=True), "max": _number(100, 599, integer=True)}

    def status_range(v: Any, p: str, o: Problems) -> None:
        if _object(v, p, o, status, required=("min",)):
            low, high = v.get("min"), v.get("max", v.get("min"))
            if isinstance(low, int) and isinstance(high, int) and high < low:
                o.add(f"{p}.max", f"{high} is below min {low}")

    _object(value, path, out, {"status": status_range, "failure": _boolean}, required=("status",))


_POLICY_FIELDS: dict[str, Checker] = {
    "timeout": _duration,
    "perTryTimeout": _duration,
    "retries": _retries,
    "responseClasses": _list(_response_class, 32),
}


def _rule(value: Any, path: str, out: Problems) -> None:
    fields: dict[str, Checker] = {
        "name": _string(_RULE_NAME, "a rule name (a-z, 0-9, '_', '.', '-'; at most 63)"),
        "match": _list(_match_entry(1), MAX_MATCHES),
        "backends": _list(_backend, MAX_BACKENDS, least=1),
        "fault": _fault,
        "mirror": _mirror,
        "requestHeaders": _header_changes,
        "responseHeaders": _header_changes,
        **_POLICY_FIELDS,
    }
    if not _object(value, path, out, fields, required=("name",)):
        return
    backends = value.get("backends")
    if isinstance(backends, list) and backends and all(isinstance(b, dict) for b in backends):
        weights = [b.get("weight", 1) for b in backends]
        if all(isinstance(w, int) for w in weights) and sum(weights) == 0:
            out.add(f"{path}.backends", "the weights sum to 0: at least one must be above 0")


def _route_spec(value: Any, path: str, out: Problems) -> None:
    fields: dict[str, Checker] = {
        "service": _service,
        "precedence": lambda v, p, o: (
            None if v in ("order", "specificity") else o.add(p, f"{v!r}: use order or specificity")
        ),
        "unmatched": lambda v, p, o: (
            None if v in ("default", "reject") else o.add(p, f"{v!r}: use default or reject")
        ),
        "rules": _list(_rule, MAX_RULES, least=1),
    }
    if not _object(value, path, out, fields, required=("service", "rules")):
        return
    rules = value.get("rules")
    if isinstance(rules, list):
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            name = rule.get("name") if isinstance(rule, dict) else None
            if isinstance(name, str):
                if name in seen or (name == "default" and value.get("unmatched") != "reject"):
                    why = "is used twice" if name in seen else "is the unmatched route's name"
                    out.add(f"{path}.rules[{i}].name", f"{name!r} {why}")
                seen.add(name)


def _budget(value: Any, path: str, out: Problems) -> None:
    fields = {
        "ratio": _number(0, 1),
        "minPerSecond": _number(0, 100_000),
        "ttl": _ttl,
    }
    _object(value, path, out, fields)


def _ttl(value: Any, path: str, out: Problems) -> None:
    _duration(value, path, out)
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError, AttributeError):
        return
    if not 1 <= seconds <= 60:  # Linkerd refuses a ttl outside 1-60 s too
        out.add(path, f"{value!r} is outside 1s..60s")


def _defaults_spec(value: Any, path: str, out: Problems) -> None:
    _object(value, path, out, {**_POLICY_FIELDS, "retryBudget": _budget})


def _subset_spec(value: Any, path: str, out: Problems) -> None:
    def tag_list(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, list) or not all(isinstance(t, str) and t for t in v):
            o.add(p, "expected a list of tags (non-empty strings)")

    def meta_map(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            o.add(p, "expected an object of string values")

    fields = {
        "service": _service,
        "subset": _string(_NAME, "a subset name (a DNS name: a-z, 0-9, '-', '.')"),
        "tags": tag_list,
        "meta": meta_map,
    }
    if _object(value, path, out, fields, required=("service", "subset")) and not (
        value.get("tags") or value.get("meta")
    ):
        out.add(path, "a subset needs tags or meta to choose its instances")


_SPECS: dict[str, Checker] = {
    "Route": _route_spec,
    "ServiceDefaults": _defaults_spec,
    "Subset": _subset_spec,
}


# -- documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    doc: dict[str, Any]  # the whole document as stored (apiVersion, kind, metadata, spec)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.doc["spec"]
        return spec


def check_document(doc: Any) -> list[str]:
    """Problems of one document on its own, as `field.path: message`."""
    out = Problems()

    def metadata(v: Any, p: str, o: Problems) -> None:
        labels = lambda x, q, r: (  # noqa: E731 - a one-line checker
            None
            if isinstance(x, dict) and all(isinstance(i, str) for i in x.values())
            else r.add(q, "expected an object of string values")
        )
        _object(
            v,
            p,
            o,
            {
                "name": _string(_NAME, "a resource name (a DNS name: a-z, 0-9, '-', '.')"),
                "labels": labels,
            },
            required=("name",),
        )

    kind = doc.get("kind") if isinstance(doc, dict) else None
    fields: dict[str, Checker] = {
        "apiVersion": lambda v, p, o: (
            None if v == API_VERSION else o.add(p, f"{v!r} is not {API_VERSION!r}")
        ),
        "kind": lambda v, p, o: (
            None if v in KINDS else o.add(p, f"{v!r} is not a kind ({', '.join(KINDS)})")
        ),
        "metadata": metadata,
        "spec": _SPECS.get(kind, lambda v, p, o: None) if isinstance(kind, str) else _no_spec,
    }
    if not isinstance(doc, dict):
        out.add("(document)", f"expected an object, got {_type_name(doc)}")
        return out.items
    _object(doc, "", out, fields, required=("apiVersion", "kind", "metadata", "spec"))
    if kind == "ServiceDefaults" and not out.items:
        _service(doc["metadata"]["name"], ".metadata.name", out)
    return [item.lstrip(".") for item in out.items]


def _no_spec(value: Any, path: str, out: Problems) -> None:
    pass


def describe(index: int, doc: Any) -> str:
    if isinstance(doc, dict):
        kind = doc.get("kind", "?")
        meta = doc.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        return f"resources[{index}] ({kind} {name})"
    return f"resources[{index}]"


def validate_all(
    docs: Sequence[Any], stored: Sequence[Resource] = ()
) -> tuple[list[Resource], list[str]]:
    """Check a batch as a whole: each document, and the rules across documents (a kind and
    name given twice; two Routes for one service; one subset of a service defined twice),
    also against what is `stored`. Returns the resources and every problem found."""
    problems: list[str] = []
    indexed: list[tuple[int, Resource]] = []
    for i, doc in enumerate(docs):
        found = check_document(doc)
        problems.extend(f"{describe(i, doc)}: {p}" for p in found)
        if not found:
            indexed.append((i, Resource(doc["kind"], doc["metadata"]["name"], doc)))
    resources = [r for _, r in indexed]
    seen: dict[tuple[str, str], int] = {}
    route_for: dict[str, str] = {}
    subset_for: dict[tuple[str, str], str] = {}
    batch_keys = {(r.kind, r.name) for r in resources}
    for r in stored:
        if (r.kind, r.name) in batch_keys:
            continue  # replaced by this batch
        if r.kind == "Route":
            route_for[r.spec["service"]] = r.name
        elif r.kind == "Subset":
            subset_for[(r.spec["service"], r.spec["subset"])] = r.name
    for i, r in indexed:
        where = describe(i, r.doc)
        key = (r.kind, r.name)
        if key in seen:
            problems.append(f"{where}: metadata.name: {r.kind} {r.name!r} is given twice")
        seen[key] = i
        if r.kind == "Route":
            other = route_for.setdefault(r.spec["service"], r.name)
            if other != r.name:
                problems.append(
                    f"{where}: spec.service: service {r.spec['service']!r} already has "
                    f"Route {other!r} (one Route per service: add rules to it)"
                )
        elif r.kind == "Subset":
            pair = (r.spec["service"], r.spec["subset"])
            other = subset_for.setdefault(pair, r.name)
            if other != r.name:
                problems.append(
                    f"{where}: spec.subset: subset {pair[1]!r} of {pair[0]!r} is already "
                    f"defined by Subset {other!r}"
                )
    return resources, problems
