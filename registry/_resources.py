"""Weft's traffic resources (`apiVersion: weft.dev/v1`): their shape and their rules. Pure.

Four kinds, each stored under `config/<kind>/<name>` (see docs/traffic.md):

    Route            how requests to one service are routed: ordered rules with a match tree,
                     weighted backends (services, or subsets of them), timeouts, retries,
                     fault injection, mirroring, header changes, response classes
    ServiceDefaults  a service's own policy (metadata.name is the service): timeout, retries,
                     retry budget, response classes; Route rules without their own inherit it;
                     and how its callers reach its endpoints: balancer, failure accrual,
                     connection pool
    Subset           a named set of a service's instances, chosen by tags and/or meta
    Gateway          the hosts an ingress gateway serves; Routes with `gateway` route them
                     (`_gateway_resources`, docs/gateway.md)
    ExternalService  a destination outside the mesh (hosts, ports, addresses, TLS
                     origination) that sidecars may call by name (docs/egress.md)

`validate_all` checks a batch of documents as a whole and returns every problem, each naming
the document (by index) and the field path, e.g.
`resources[2] (Route reviews): spec.rules[0].match[0].path.regex: '((' is not a valid regex`.
Nothing of a batch is stored unless all of it is valid. The field names are chosen so that
ServiceProfile, VirtualService + DestinationRule, Gateway API HTTPRoute and SMI TrafficSplit
translate into these kinds without loss (the mapping is in docs/traffic.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._decode import parse_duration
from ._external_service import check_spec as _external_spec
from ._gateway_resources import check_hosts, cross_check, gateway_route_rules, gateway_spec
from ._resource_checks import (
    MAX_ATTEMPTS,
    MAX_BACKENDS,
    MAX_MATCHES,
    MAX_RULES,
    MAX_WEIGHT,
    NAME,
    PROTECTED_HEADERS,
    RETRY_CONDITIONS,
    RULE_NAME,
    SOURCE,
    TOKEN,
    Checker,
    Problems,
    check_boolean,
    check_duration,
    check_list,
    check_match,
    check_number,
    check_object,
    check_service,
    check_string,
    type_name,
)

API_VERSION = "weft.dev/v1"
KINDS = ("Route", "ServiceDefaults", "Subset", "Gateway", "ExternalService")
OUTBOUND_MODES = ("allow-any", "registry-only")

# -- policies --------------------------------------------------------------------------------


def _retries(value: Any, path: str, out: Problems) -> None:
    def condition(v: Any, p: str, o: Problems) -> None:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 100 <= v <= 599:
                o.add(p, f"{v} is not an HTTP status (100..599)")
        elif v not in RETRY_CONDITIONS:
            o.add(p, f"{v!r} is not a retry condition ({', '.join(RETRY_CONDITIONS)}, or a code)")

    fields = {
        "attempts": check_number(0, MAX_ATTEMPTS, integer=True),
        "retryOn": check_list(condition, 16, least=1),
        "nonIdempotent": check_boolean,
    }
    check_object(value, path, out, fields)


def _percent(value: Any, path: str, out: Problems) -> None:
    check_number(0, 100)(value, path, out)


def _fault(value: Any, path: str, out: Problems) -> None:
    delay: dict[str, Checker] = {"fixed": check_duration, "percent": _percent}
    abort: dict[str, Checker] = {
        "status": check_number(200, 599, integer=True),
        "grpcStatus": check_number(1, 16, integer=True),
        "percent": _percent,
    }
    fields: dict[str, Checker] = {
        "delay": lambda v, p, o: check_object(v, p, o, delay, required=("fixed", "percent")),
        "abort": lambda v, p, o: check_object(v, p, o, abort, required=("status", "percent")),
    }
    if check_object(value, path, out, fields) and not value:
        out.add(path, "give a delay, an abort or both")


def _backend(value: Any, path: str, out: Problems) -> None:
    fields = {
        "service": check_service,
        "subset": check_string(NAME, "a subset name"),
        "weight": check_number(0, MAX_WEIGHT, integer=True),
    }
    check_object(value, path, out, fields, required=("service",))


def _mirror(value: Any, path: str, out: Problems) -> None:
    fields = {
        "service": check_service,
        "subset": check_string(NAME, "a subset name"),
        "percent": _percent,
    }
    check_object(value, path, out, fields, required=("service",))


_REWRITE_PATH = re.compile(r"^/[!-\"$->@-~]{0,1023}$")  # no space, '?' or '#'


def _rewrite(value: Any, path: str, out: Problems) -> None:
    def target(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, str) or not _REWRITE_PATH.match(v):
            o.add(p, f"{v!r} is not a path: '/' then visible characters, no '?' or '#'")

    if check_object(value, path, out, {"prefix": target, "fullPath": target}) and (len(value) != 1):
        out.add(path, "give exactly one of prefix and fullPath")


def _header_changes(value: Any, path: str, out: Problems) -> None:
    def name_ok(name: Any, p: str, o: Problems) -> bool:
        if not isinstance(name, str) or not TOKEN.match(name):
            o.add(p, f"{name!r} is not a header name")
            return False
        lowered = name.lower()
        if lowered in PROTECTED_HEADERS or lowered.startswith("x-weft-"):
            o.add(p, f"header {name!r} is managed by the proxy and cannot be changed")
            return False
        return True

    def values(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, dict):
            o.add(p, f"expected an object of header: value, got {type_name(v)}")
            return
        for name, item in v.items():
            if name_ok(name, f"{p}.{name}", o) and (
                not isinstance(item, str) or "\r" in item or "\n" in item
            ):
                o.add(f"{p}.{name}", "a header value must be a string without CR or LF")

    def names(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, list):
            o.add(p, f"expected a list of header names, got {type_name(v)}")
            return
        for i, name in enumerate(v):
            name_ok(name, f"{p}[{i}]", o)

    check_object(value, path, out, {"set": values, "add": values, "remove": names})


def _response_class(value: Any, path: str, out: Problems) -> None:
    status = {
        "min": check_number(100, 599, integer=True),
        "max": check_number(100, 599, integer=True),
    }

    def status_range(v: Any, p: str, o: Problems) -> None:
        if check_object(v, p, o, status, required=("min",)):
            low, high = v.get("min"), v.get("max", v.get("min"))
            if isinstance(low, int) and isinstance(high, int) and high < low:
                o.add(f"{p}.max", f"{high} is below min {low}")

    check_object(
        value, path, out, {"status": status_range, "failure": check_boolean}, required=("status",)
    )


_POLICY_FIELDS: dict[str, Checker] = {
    "timeout": check_duration,
    "perTryTimeout": check_duration,
    "retries": _retries,
    "responseClasses": check_list(_response_class, 32),
}


def _rule(value: Any, path: str, out: Problems) -> None:
    fields: dict[str, Checker] = {
        "name": check_string(RULE_NAME, "a rule name (a-z, 0-9, '_', '.', '-'; at most 63)"),
        "match": check_list(check_match(1), MAX_MATCHES),
        "backends": check_list(_backend, MAX_BACKENDS, least=1),
        "fault": _fault,
        "mirror": _mirror,
        "rewrite": _rewrite,
        "requestHeaders": _header_changes,
        "responseHeaders": _header_changes,
        **_POLICY_FIELDS,
    }
    if not check_object(value, path, out, fields, required=("name",)):
        return
    backends = value.get("backends")
    if isinstance(backends, list) and backends and all(isinstance(b, dict) for b in backends):
        weights = [b.get("weight", 1) for b in backends]
        if all(isinstance(w, int) for w in weights) and sum(weights) == 0:
            out.add(f"{path}.backends", "the weights sum to 0: at least one must be above 0")


def _route_spec(value: Any, path: str, out: Problems) -> None:
    fields: dict[str, Checker] = {
        "service": check_service,
        "gateway": check_string(NAME, "a Gateway name"),
        "hosts": check_hosts,
        "precedence": lambda v, p, o: (
            None if v in ("order", "specificity") else o.add(p, f"{v!r}: use order or specificity")
        ),
        "unmatched": lambda v, p, o: (
            None if v in ("default", "reject") else o.add(p, f"{v!r}: use default or reject")
        ),
        "rules": check_list(_rule, MAX_RULES, least=1),
    }
    if not check_object(value, path, out, fields, required=("rules",)):
        return
    if "gateway" in value:
        gateway_route_rules(value, path, out)
    elif "service" not in value:
        out.add(f"{path}.service", "is required (or gateway, for a Route at an ingress gateway)")
    elif "hosts" in value:
        out.add(f"{path}.hosts", "hosts are matched at a gateway: give gateway too")
    gateway = "gateway" in value
    rules = value.get("rules")
    if isinstance(rules, list):
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            name = rule.get("name") if isinstance(rule, dict) else None
            if isinstance(name, str):
                unmatched = value.get("unmatched", "reject" if gateway else "default")
                if name in seen or (name == "default" and unmatched != "reject"):
                    why = "is used twice" if name in seen else "is the unmatched route's name"
                    out.add(f"{path}.rules[{i}].name", f"{name!r} {why}")
                seen.add(name)


def _budget(value: Any, path: str, out: Problems) -> None:
    fields = {
        "ratio": check_number(0, 1),
        "minPerSecond": check_number(0, 100_000),
        "ttl": _ttl,
    }
    check_object(value, path, out, fields)


def _ttl(value: Any, path: str, out: Problems) -> None:
    check_duration(value, path, out)
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError, AttributeError):
        return
    if not 1 <= seconds <= 60:  # Linkerd refuses a ttl outside 1-60 s too
        out.add(path, f"{value!r} is outside 1s..60s")


BALANCERS = ("p2c_ewma", "round_robin", "least_request")


def _balancer(value: Any, path: str, out: Problems) -> None:
    if value not in BALANCERS:
        out.add(path, f"{value!r}: use one of {', '.join(BALANCERS)}")


def _failure_accrual(value: Any, path: str, out: Problems) -> None:
    fields = {
        "consecutiveFailures": check_number(1, 1000, integer=True),
        "backoffMin": check_duration,
        "backoffMax": check_duration,
    }
    if not check_object(value, path, out, fields):
        return
    try:
        low = parse_duration(value.get("backoffMin", "1s"))
        high = parse_duration(value.get("backoffMax", "60s"))
    except (ValueError, TypeError, AttributeError):
        return  # already said
    if low > high:
        out.add(f"{path}.backoffMin", f"{value.get('backoffMin')!r} is above backoffMax")


def _connection_pool(value: Any, path: str, out: Problems) -> None:
    fields = {
        "maxConnections": check_number(1, 100_000, integer=True),
        "connectTimeout": check_duration,
        "idleTimeout": check_duration,
    }
    check_object(value, path, out, fields)


def _outbound(value: Any, path: str, out: Problems) -> None:
    if value not in OUTBOUND_MODES:
        out.add(path, f"{value!r}: use one of {', '.join(OUTBOUND_MODES)}")


def _defaults_spec(value: Any, path: str, out: Problems) -> None:
    fields = {
        **_POLICY_FIELDS,
        "retryBudget": _budget,
        "balancer": _balancer,
        "failureAccrual": _failure_accrual,
        "connectionPool": _connection_pool,
        # The service's own sidecar: may it call hosts no ExternalService declares?
        "outbound": lambda v, p, o: (
            None
            if v in OUTBOUND_MODES
            else o.add(p, f"{v!r}: use one of {', '.join(OUTBOUND_MODES)}")
        ),
    }
    check_object(value, path, out, fields)


def _subset_spec(value: Any, path: str, out: Problems) -> None:
    def tag_list(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, list) or not all(isinstance(t, str) and t for t in v):
            o.add(p, "expected a list of tags (non-empty strings)")

    def meta_map(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            o.add(p, "expected an object of string values")

    fields = {
        "service": check_service,
        "subset": check_string(NAME, "a subset name (a DNS name: a-z, 0-9, '-', '.')"),
        "tags": tag_list,
        "meta": meta_map,
    }
    if check_object(value, path, out, fields, required=("service", "subset")) and not (
        value.get("tags") or value.get("meta")
    ):
        out.add(path, "a subset needs tags or meta to choose its instances")


_SPECS: dict[str, Checker] = {
    "Route": _route_spec,
    "ServiceDefaults": _defaults_spec,
    "Subset": _subset_spec,
    "Gateway": gateway_spec,
    "ExternalService": _external_spec,
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
        check_object(
            v,
            p,
            o,
            {
                "name": check_string(NAME, "a resource name (a DNS name: a-z, 0-9, '-', '.')"),
                "labels": labels,
                # What `weft get -o yaml` shows is the server's: accepted back, never stored.
                "revision": check_number(0, 2**63, integer=True),
                "createRevision": check_number(0, 2**63, integer=True),
                # Who wrote it (an adapter's source) is the server's to say, as above.
                "source": check_string(SOURCE, "a source like 'k8s/prod'"),
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
        out.add("(document)", f"expected an object, got {type_name(doc)}")
        return out.items
    check_object(doc, "", out, fields, required=("apiVersion", "kind", "metadata", "spec"))
    if kind in ("ServiceDefaults", "ExternalService") and not out.items:
        # A sidecar calls an ExternalService by this name (routes' backends), as a service.
        check_service(doc["metadata"]["name"], ".metadata.name", out)
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
    host_for: dict[str, str] = {}  # an external host belongs to one ExternalService
    batch_keys = {(r.kind, r.name) for r in resources}
    for r in stored:
        if (r.kind, r.name) in batch_keys:
            continue  # replaced by this batch
        if r.kind == "Route" and "service" in r.spec:
            route_for[r.spec["service"]] = r.name
        elif r.kind == "Subset":
            subset_for[(r.spec["service"], r.spec["subset"])] = r.name
        elif r.kind == "ExternalService":
            host_for.update((h, r.name) for h in r.spec["hosts"])
    for i, r in indexed:
        where = describe(i, r.doc)
        key = (r.kind, r.name)
        if key in seen:
            problems.append(f"{where}: metadata.name: {r.kind} {r.name!r} is given twice")
        seen[key] = i
        if r.kind == "Route" and "service" in r.spec:
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
        elif r.kind == "ExternalService":
            for j, host in enumerate(r.spec["hosts"]):
                other = host_for.setdefault(host, r.name)
                if other != r.name:
                    problems.append(
                        f"{where}: spec.hosts[{j}]: {host!r} is already declared by "
                        f"ExternalService {other!r}"
                    )
    problems.extend(
        cross_check(
            [(describe(i, r.doc), r.doc) for i, r in indexed],
            [r.doc for r in stored if (r.kind, r.name) not in batch_keys],
        )
    )
    return resources, problems
