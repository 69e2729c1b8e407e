"""Traffic resources compiled into a sidecar's snapshot (schema v2). Pure.

For each upstream a sidecar calls, the resources that affect it are its Route (at most one
per service), its ServiceDefaults and the Subsets of every service its routes send to. The
Route's rules become the upstream's `routes`, in order, each filled in from ServiceDefaults
where it says nothing itself (timeout, per-try timeout, retries, response classes); unless
the Route says `unmatched: reject`, a last route named `default` takes every other request
with the service's defaults. ServiceDefaults alone (no Route) give that one `default` route.
Every upstream gets a retry budget (Linkerd's 0.2 / 10 per second / 10 s unless set).

Services the routes name as backends or mirrors that the sidecar does not list become
upstreams without a local port (reachable only through the routes and the forward proxy).
Endpoints carry the names of the subsets whose tags and meta their instance has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from registry.resources import parse_duration

DEFAULT_BUDGET = {"ratio": 0.2, "min_per_second": 10, "ttl_ms": 10_000}


def _ms(value: Any) -> int:
    return max(1, round(parse_duration(value) * 1000))


class Resources:
    """The stored resources (documents as `GET /v1/resources` returns them), indexed."""

    def __init__(self, docs: Iterable[Mapping[str, Any]]) -> None:
        self.routes: dict[str, Mapping[str, Any]] = {}
        self.defaults: dict[str, Mapping[str, Any]] = {}
        self.subsets: dict[str, list[Mapping[str, Any]]] = {}
        self.gateways: dict[str, Mapping[str, Any]] = {}  # Gateway name: its document
        self.gateway_routes: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        self.externals: dict[str, Mapping[str, Any]] = {}  # ExternalService by name
        for doc in docs:
            kind, spec = doc.get("kind"), doc.get("spec") or {}
            if kind == "Route" and "gateway" in spec:
                self.gateway_routes.setdefault(spec["gateway"], []).append(
                    (doc["metadata"]["name"], spec)
                )
            elif kind == "Route":
                self.routes[spec["service"]] = spec
            elif kind == "Gateway":
                self.gateways[doc["metadata"]["name"]] = doc
            elif kind == "ServiceDefaults":
                self.defaults[doc["metadata"]["name"]] = spec
            elif kind == "Subset":
                self.subsets.setdefault(spec["service"], []).append(spec)
            elif kind == "ExternalService":
                self.externals[doc["metadata"]["name"]] = spec

    def referenced(self, service: str) -> set[str]:
        """Services a service's Route sends to (backends and mirrors), itself excluded."""
        route = self.routes.get(service)
        out: set[str] = set()
        for rule in route.get("rules", []) if route else []:
            out.update(b["service"] for b in rule.get("backends", []))
            if rule.get("mirror"):
                out.add(rule["mirror"]["service"])
        out.discard(service)
        return out

    def subsets_of(self, service: str, instance: Mapping[str, Any]) -> list[str]:
        tags = set(instance.get("tags") or ())
        meta = instance.get("meta") or {}
        out = []
        for subset in self.subsets.get(service, ()):
            if set(subset.get("tags", ())) <= tags and all(
                meta.get(k) == v for k, v in (subset.get("meta") or {}).items()
            ):
                out.append(subset["subset"])
        return sorted(out)


def budget_fields(defaults: Mapping[str, Any]) -> dict[str, Any]:
    budget = dict(DEFAULT_BUDGET)
    given = defaults.get("retryBudget") or {}
    if "ratio" in given:
        budget["ratio"] = given["ratio"]
    if "minPerSecond" in given:
        budget["min_per_second"] = given["minPerSecond"]
    if "ttl" in given:
        budget["ttl_ms"] = _ms(given["ttl"])
    return budget


def _match(entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "path":
            out["path"] = {
                ("segment_prefix" if k == "segmentPrefix" else k): v for k, v in value.items()
            }
        elif key in ("all", "any"):
            out[key] = [_match(e) for e in value]
        elif key == "not":
            out[key] = _match(value)
        else:
            out[key] = value
    return out


def _policy(rule: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    timeout = rule.get("timeout", defaults.get("timeout"))
    if timeout is not None:
        out["timeout_ms"] = _ms(timeout)
    per_try = rule.get("perTryTimeout", defaults.get("perTryTimeout"))
    if per_try is not None:
        out["per_try_ms"] = _ms(per_try)
    retries = rule.get("retries", defaults.get("retries"))
    if retries is not None:
        out["retry"] = {
            "attempts": retries.get("attempts", 2),
            "on": list(retries.get("retryOn", ["gateway-error"])),
            "non_idempotent": bool(retries.get("nonIdempotent", False)),
        }
    classes = rule.get("responseClasses", defaults.get("responseClasses"))
    if classes:
        out["response_classes"] = [
            {
                "min": c["status"]["min"],
                "max": c["status"].get("max", c["status"]["min"]),
                "failure": c.get("failure", True),
            }
            for c in classes
        ]
    return out


def _headers(changes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not changes:
        return None
    return {k: (list(v) if k == "remove" else dict(v)) for k, v in changes.items()}


def compile_rule(rule: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule["name"]}
    if rule.get("match"):
        out["match"] = [_match(e) for e in rule["match"]]
    if rule.get("backends"):
        out["backends"] = [
            {
                "upstream": b["service"],
                "weight": b.get("weight", 1),
                **({"subset": b["subset"]} if b.get("subset") else {}),
            }
            for b in rule["backends"]
        ]
    out.update(_policy(rule, defaults))
    fault = rule.get("fault")
    if fault:
        compiled: dict[str, Any] = {}
        if "delay" in fault:
            compiled["delay"] = {
                "ms": _ms(fault["delay"]["fixed"]),
                "percent": fault["delay"]["percent"],
            }
        if "abort" in fault:
            abort = fault["abort"]
            compiled["abort"] = {"status": abort["status"], "percent": abort["percent"]}
            if "grpcStatus" in abort:
                compiled["abort"]["grpc_status"] = abort["grpcStatus"]
        out["fault"] = compiled
    rewrite = rule.get("rewrite")
    if rewrite:
        out["rewrite"] = (
            {"full_path": rewrite["fullPath"]}
            if "fullPath" in rewrite
            else {"prefix": rewrite["prefix"]}
        )
    mirror = rule.get("mirror")
    if mirror:
        out["mirror"] = {
            "upstream": mirror["service"],
            "percent": mirror.get("percent", 100),
            **({"subset": mirror["subset"]} if mirror.get("subset") else {}),
        }
    for key, name in (
        ("requestHeaders", "request_headers"),
        ("responseHeaders", "response_headers"),
    ):
        changes = _headers(rule.get(key))
        if changes:
            out[name] = changes
    return out


def endpoint_fields(service: str, resources: Resources) -> dict[str, Any]:
    """How a sidecar reaches the service's endpoints (HTTP or opaque TCP): the balancer,
    failure accrual, connection pool and connect timeout its ServiceDefaults choose."""
    return _endpoint_policy(resources.defaults.get(service, {}))


def _endpoint_policy(defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "balancer" in defaults:
        out["balancer"] = defaults["balancer"]
    accrual = defaults.get("failureAccrual") or {}
    if accrual:
        fields = {"consecutiveFailures": "consecutive_failures"}
        out["failure_accrual"] = {fields[k]: v for k, v in accrual.items() if k in fields}
        for key, name in (("backoffMin", "backoff_min_ms"), ("backoffMax", "backoff_max_ms")):
            if key in accrual:
                out["failure_accrual"][name] = _ms(accrual[key])
    pool = defaults.get("connectionPool") or {}
    if "maxConnections" in pool or "idleTimeout" in pool:
        out["pool"] = {}
        if "maxConnections" in pool:
            out["pool"]["max_connections"] = pool["maxConnections"]
        if "idleTimeout" in pool:
            out["pool"]["idle_timeout_ms"] = _ms(pool["idleTimeout"])
    if "connectTimeout" in pool:
        out["timeouts"] = {"connect_ms": _ms(pool["connectTimeout"])}
    return out


def upstream_fields(service: str, resources: Resources) -> dict[str, Any]:
    """The v2 fields of one upstream: routes, precedence, retry budget, and the balancer,
    failure accrual and connection pool its ServiceDefaults choose."""
    defaults = resources.defaults.get(service, {})
    out: dict[str, Any] = {"retry_budget": budget_fields(defaults), **_endpoint_policy(defaults)}
    route = resources.routes.get(service)
    fallback = {"name": "default", **_policy({}, defaults)}
    if route is not None:
        routes = [compile_rule(rule, defaults) for rule in route["rules"]]
        if route.get("unmatched", "default") != "reject":
            routes.append(fallback)
        out["routes"] = routes
        if route.get("precedence", "order") != "order":
            out["precedence"] = route["precedence"]
    elif len(fallback) > 1:
        out["routes"] = [fallback]
    return out
