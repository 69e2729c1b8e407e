"""Istio DestinationRule (`networking.istio.io` v1, v1beta1, v1alpha3) -> Subsets and the
service's endpoint policy (ServiceDefaults balancer, failureAccrual, connectionPool). Pure.

What Envoy does that Weft's sidecar does differently is said per field: `maxConnections` is
a limit per endpoint in Weft, and a request over it waits for a connection (Envoy counts the
whole service and fails what overflows its pending queue with 503); an ejection lasts
`baseEjectionTime` doubled per ejection (Envoy: times the number of ejections), up to
`maxEjectionTime` (300 s unless set, never below the base). Istio has no outlier detection
unless a DestinationRule asks for it; Weft's failure accrual is always on (7 failures).
"""

from __future__ import annotations

from typing import Any

from registry.resources import parse_duration

from ._notes import Notes

_BALANCERS = {
    "ROUND_ROBIN": "round_robin",
    "LEAST_REQUEST": "least_request",
    "LEAST_CONN": "least_request",  # Istio's deprecated name for LEAST_REQUEST
}
_MOST_FAILURES = 1000  # Weft's most: in practice never ejects


def _load_balancer(lb: Any, path: str, notes: Notes, out: dict[str, Any]) -> None:
    if not isinstance(lb, dict):
        return
    notes.unknown(lb, path, {"simple"})
    simple = lb.get("simple")
    if simple in _BALANCERS:
        out["balancer"] = _BALANCERS[simple]
    elif simple not in (None, "UNSPECIFIED"):
        notes.ignored(
            f"{path}.simple",
            f"{simple} is not supported: callers keep p2c_ewma (the less loaded of two "
            "endpoints drawn at random)",
        )


def _connection_pool(pool: Any, path: str, notes: Notes, out: dict[str, Any]) -> None:
    if not isinstance(pool, dict):
        return
    notes.unknown(pool, path, {"tcp", "http"})
    made: dict[str, Any] = {}
    tcp: dict[str, Any] = pool["tcp"] if isinstance(pool.get("tcp"), dict) else {}
    http: dict[str, Any] = pool["http"] if isinstance(pool.get("http"), dict) else {}
    notes.unknown(tcp, f"{path}.tcp", {"maxConnections", "connectTimeout"})
    notes.unknown(http, f"{path}.http", {"idleTimeout"})
    if "maxConnections" in tcp:
        made["maxConnections"] = max(1, min(int(tcp["maxConnections"]), 100_000))
        notes.note(
            f"{path}.tcp.maxConnections",
            "a limit per endpoint; a request over it waits for a free connection "
            "(Envoy limits the whole service and answers 503 past http1MaxPendingRequests)",
        )
    if "connectTimeout" in tcp:
        made["connectTimeout"] = tcp["connectTimeout"]
    if "idleTimeout" in http:
        made["idleTimeout"] = http["idleTimeout"]
    if made:
        out["connectionPool"] = made


def _outlier_detection(od: Any, path: str, notes: Notes, out: dict[str, Any]) -> None:
    if not isinstance(od, dict):
        return
    known = {"consecutive5xxErrors", "consecutiveErrors", "baseEjectionTime", "maxEjectionTime"}
    notes.unknown(od, path, known)
    # consecutiveErrors is the name before Istio 1.5; unset, Envoy's default of 5 applies.
    key = next((k for k in ("consecutive5xxErrors", "consecutiveErrors") if k in od), None)
    count = int(od[key]) if key else 5
    if count <= 0:
        notes.note(f"{path}.{key}", f"0 turns ejection off: imported as {_MOST_FAILURES} failures")
        count = _MOST_FAILURES
    base = parse_duration(od.get("baseEjectionTime", "30s"))
    most = max(base, parse_duration(od.get("maxEjectionTime", "300s")))
    count = min(count, _MOST_FAILURES)
    made = {
        "consecutiveFailures": count,
        "backoffMin": _duration(base),
        "backoffMax": _duration(most),
    }
    notes.note(
        path,
        f"an endpoint is ejected after {count} failure{'s' if count > 1 else ''} in a row (any "
        f"5xx, a timeout, a refused or reset connection) for {made['backoffMin']}, doubled "
        f"per ejection in a row up to {made['backoffMax']} (Envoy: times the number of "
        "ejections)",
    )
    out["failureAccrual"] = made


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{int(seconds)}s"


def traffic_policy(policy: Any, path: str, notes: Notes) -> dict[str, Any]:
    """A DestinationRule trafficPolicy as ServiceDefaults fields; each field Weft cannot
    honour is a warning of its own."""
    out: dict[str, Any] = {}
    if not isinstance(policy, dict):
        return out
    notes.unknown(policy, path, {"loadBalancer", "connectionPool", "outlierDetection", "tls"})
    if "tls" in policy:
        notes.ignored(f"{path}.tls", "is ignored: Weft's sidecars always speak mutual TLS")
    _load_balancer(policy.get("loadBalancer"), f"{path}.loadBalancer", notes, out)
    _connection_pool(policy.get("connectionPool"), f"{path}.connectionPool", notes, out)
    if "outlierDetection" in policy:
        _outlier_detection(policy["outlierDetection"], f"{path}.outlierDetection", notes, out)
    return out


def convert_destination_rule(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"host", "subsets", "trafficPolicy", "exportTo"})
    service = notes.service(spec.get("host"))
    if service is None:
        notes.problem("spec.host", f"{spec.get('host')!r} is not a service name")
        return []
    if "exportTo" in spec:
        notes.ignored("spec.exportTo")
    out = []
    for i, subset in enumerate(spec.get("subsets") or []):
        where = f"spec.subsets[{i}]"
        notes.unknown(subset, where, {"name", "labels", "trafficPolicy"})
        if "trafficPolicy" in subset:
            notes.ignored(
                f"{where}.trafficPolicy", "is not supported (a policy per subset) and is ignored"
            )
        labels = subset.get("labels") or {}
        if not labels:
            notes.problem(f"{where}.labels", "a subset needs labels to choose its instances")
            continue
        name = str(subset.get("name"))
        out.append(
            _doc(
                "Subset",
                f"{service}-{name}"[:63],
                {
                    "service": service,
                    "subset": name,
                    "meta": {k: str(v) for k, v in labels.items()},
                },
            )
        )
    defaults = traffic_policy(spec.get("trafficPolicy"), "spec.trafficPolicy", notes)
    if defaults:
        out.append(_doc("ServiceDefaults", service, defaults))
    return out


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
