"""Istio VirtualService -> Route, DestinationRule -> Subsets (`networking.istio.io` v1beta1,
v1, v1alpha3). Pure.

Istio's semantics kept: `http[]` in order, the first that matches wins (`precedence:
order`); a request no rule takes gets 404 (`unmatched: reject`); `match[]` entries are ORed,
fields in one ANDed; `uri.prefix` is a string prefix; regexes match whole values. Istio's
implicit retries (2 on connect-failure, refused-stream, unavailable, cancelled and 503) are
written out, and only for idempotent requests: said in a note, never silently.
"""

from __future__ import annotations

from typing import Any

from ._gateways import gateway_of, gateway_routes, hosts_of
from ._names import rule_name, service_of
from ._notes import Notes

_RETRY_ON = {
    "5xx": "5xx",
    "gateway-error": "gateway-error",
    "connect-failure": "reset",
    "refused-stream": "reset",
    "reset": "reset",
    "retriable-4xx": 409,
}


def _string_match(value: Any, path: str, notes: Notes) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    notes.unknown(value, path, {"exact", "prefix", "regex"})
    for op in ("exact", "prefix", "regex"):
        if op in value:
            return {op: value[op]}
    return {"present": True}  # an empty StringMatch tests presence


def _headers(values: Any, path: str, notes: Notes) -> list[dict[str, Any]]:
    out = []
    for name, value in (values or {}).items():
        m = _string_match(value, f"{path}.{name}", notes)
        if m is not None:
            out.append({"name": name, **m})
    return out


def _match(m: Any, path: str, notes: Notes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(m, dict):
        return out
    notes.unknown(
        m,
        path,
        {"name", "uri", "method", "headers", "queryParams", "withoutHeaders", "ignoreUriCase"},
    )
    if m.get("ignoreUriCase"):
        notes.ignored(f"{path}.ignoreUriCase", "is not supported: paths match case-sensitively")
    if "uri" in m:
        uri = _string_match(m["uri"], f"{path}.uri", notes)
        if uri and "present" not in uri:
            out["path"] = uri
    method = m.get("method")
    if isinstance(method, dict):
        if "exact" in method:
            out["method"] = method["exact"]
        else:
            notes.ignored(f"{path}.method", "is supported only as exact; ignored")
    if m.get("headers"):
        out["headers"] = _headers(m["headers"], f"{path}.headers", notes)
    if m.get("queryParams"):
        out["query"] = _headers(m["queryParams"], f"{path}.queryParams", notes)
    if m.get("withoutHeaders"):
        # Each withoutHeaders entry is negated on its own and they are ANDed: not(any(...)).
        without = _headers(m["withoutHeaders"], f"{path}.withoutHeaders", notes)
        out["not"] = {"any": [{"headers": [h]} for h in without]}
    return out


def _percent(value: Any, legacy: Any = None) -> float:
    if isinstance(value, dict) and "value" in value:
        return float(value["value"])
    if legacy is not None:
        return float(legacy)
    return 0.0


def _fault(fault: dict[str, Any], path: str, notes: Notes) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    notes.unknown(fault, path, {"delay", "abort"})
    delay = fault.get("delay")
    if isinstance(delay, dict):
        notes.unknown(delay, f"{path}.delay", {"fixedDelay", "percentage", "percent"})
        if "fixedDelay" in delay:
            out["delay"] = {
                "fixed": delay["fixedDelay"],
                "percent": _percent(delay.get("percentage"), delay.get("percent")),
            }
    abort = fault.get("abort")
    if isinstance(abort, dict):
        notes.unknown(abort, f"{path}.abort", {"httpStatus", "percentage"})
        if "httpStatus" in abort:
            out["abort"] = {
                "status": abort["httpStatus"],
                "percent": _percent(abort.get("percentage")),
            }
    return out or None


def _retries(retries: Any, path: str, notes: Notes) -> dict[str, Any]:
    if retries is None:
        notes.note(
            path,
            "absent: Istio would retry twice on connect-failure, refused-stream, "
            "unavailable, cancelled and 503, POSTs included; imported explicitly as "
            "retries {attempts: 2, retryOn: [reset, 503]} for idempotent requests only",
        )
        return {"attempts": 2, "retryOn": ["reset", 503]}
    notes.unknown(
        retries, path, {"attempts", "perTryTimeout", "retryOn", "retryIgnorePreviousHosts"}
    )
    out: dict[str, Any] = {"attempts": min(int(retries.get("attempts", 2)), 10)}
    conditions: list[Any] = []
    for token in str(retries.get("retryOn", "")).split(","):
        token = token.strip()
        if not token:
            continue
        mapped = int(token) if token.isdigit() else _RETRY_ON.get(token)
        if token == "retriable-status-codes":
            mapped = 503
        if mapped is None:
            notes.ignored(f"{path}.retryOn", f"condition {token!r} is not supported and is ignored")
        elif mapped not in conditions:
            conditions.append(mapped)
    if conditions:
        out["retryOn"] = conditions
    if out["attempts"]:
        notes.note(
            path,
            "unlike Istio, non-idempotent requests (POST, PATCH) are not retried "
            "(a Weft Route with nonIdempotent: true opts in)",
        )
    return out


def _headers_op(h: Any, path: str, notes: Notes) -> dict[str, Any]:
    notes.unknown(h, path, {"set", "add", "remove"})
    return {k: h[k] for k in ("set", "add", "remove") if k in h}


def _http(rule: dict[str, Any], i: int, taken: set[str], notes: Notes) -> dict[str, Any]:
    where = f"http[{i}]"
    known = {
        "name",
        "match",
        "route",
        "timeout",
        "retries",
        "fault",
        "mirror",
        "mirrorPercentage",
        "mirrorPercent",
        "mirror_percent",
        "headers",
    }
    for key in rule:
        if key not in known:
            notes.ignored(f"{where}.{key}")
    out: dict[str, Any] = {"name": rule_name(rule.get("name"), f"http-{i}", taken)}
    if rule.get("match"):
        out["match"] = [
            _match(m, f"{where}.match[{j}]", notes) for j, m in enumerate(rule["match"])
        ]
    backends = []
    for j, dest in enumerate(rule.get("route") or []):
        d = dest.get("destination") or {}
        for key in dest:
            if key not in ("destination", "weight"):
                notes.ignored(f"{where}.route[{j}].{key}")
        if "port" in d:
            notes.ignored(
                f"{where}.route[{j}].destination.port",
                "is ignored: the registry knows the service's port",
            )
        target = service_of(d.get("host"))
        if target is None:
            notes.problem(
                f"{where}.route[{j}].destination.host", f"{d.get('host')!r} is not a service"
            )
            continue
        backend: dict[str, Any] = {"service": target}
        if d.get("subset"):
            backend["subset"] = d["subset"]
        if "weight" in dest:
            backend["weight"] = dest["weight"]
        elif any("weight" in other for other in rule["route"]):
            backend["weight"] = 0  # Istio: an unweighted destination among weighted ones gets none
        backends.append(backend)
    if backends:
        out["backends"] = backends
    if rule.get("timeout"):
        out["timeout"] = rule["timeout"]
    retries = rule.get("retries")
    if isinstance(retries, dict) and retries.get("perTryTimeout"):
        out["perTryTimeout"] = retries["perTryTimeout"]
    out["retries"] = _retries(retries, f"{where}.retries", notes)
    if isinstance(rule.get("fault"), dict):
        fault = _fault(rule["fault"], f"{where}.fault", notes)
        if fault:
            out["fault"] = fault
    mirror = rule.get("mirror")
    if isinstance(mirror, dict) and service_of(mirror.get("host")):
        m: dict[str, Any] = {"service": service_of(mirror["host"])}
        if mirror.get("subset"):
            m["subset"] = mirror["subset"]
        legacy = rule.get("mirrorPercent", rule.get("mirror_percent"))
        m["percent"] = _percent(rule.get("mirrorPercentage"), legacy if legacy is not None else 100)
        out["mirror"] = m
    headers = rule.get("headers")
    if isinstance(headers, dict):
        notes.unknown(headers, f"{where}.headers", {"request", "response"})
        if isinstance(headers.get("request"), dict):
            out["requestHeaders"] = _headers_op(
                headers["request"], f"{where}.headers.request", notes
            )
        if isinstance(headers.get("response"), dict):
            out["responseHeaders"] = _headers_op(
                headers["response"], f"{where}.headers.response", notes
            )
    return out


def convert_virtual_service(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"hosts", "http", "gateways", "exportTo", "tcp", "tls"})
    for key in ("tcp", "tls", "exportTo"):
        if key in spec:
            notes.ignored(f"spec.{key}")
    listed = spec.get("gateways") or []
    gateways = [g for g in map(gateway_of, listed) if g]
    if gateways and "mesh" not in listed:
        # Istio would apply these rules at the gateways only. Weft has always applied them to
        # the sidecars too (the talk's VirtualService names a gateway and is meant for the
        # mesh), so both: a Route for each gateway and one for the hosts' services.
        notes.ignored(
            "spec.gateways",
            "without mesh is widened: the rules apply at the gateways and to every sidecar "
            "calling the hosts (as with gateways: [mesh, ...])",
        )
    for key in ("hosts", "http"):
        if not isinstance(spec.get(key, []), list):
            notes.problem(f"spec.{key}", "expected a list")
            return []
    taken: set[str] = set()
    rules = [
        _http(r, i, taken, notes)
        for i, r in enumerate(spec.get("http") or [])
        if isinstance(r, dict)
    ]
    if not rules:
        return []
    out = gateway_routes(
        str((doc.get("metadata") or {}).get("name")),
        gateways,
        hosts_of(spec.get("hosts"), notes, "spec.hosts"),
        rules,
        {"precedence": "order"},
        notes,
    )
    for j, host in enumerate(spec.get("hosts") or []):
        service = service_of(host)
        if service is None:
            notes.ignored(f"spec.hosts[{j}]", f"{host!r} is not a service name; ignored")
            continue
        spec_out = {
            "service": service,
            "precedence": "order",
            "unmatched": "reject",
            "rules": rules,
        }
        out.append(_doc("Route", service, spec_out))
    if not any("service" in d["spec"] for d in out):
        notes.problem("spec.hosts", "no host names a service")
    return out


def convert_destination_rule(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"host", "subsets", "trafficPolicy", "exportTo"})
    service = service_of(spec.get("host"))
    if service is None:
        notes.problem("spec.host", f"{spec.get('host')!r} is not a service name")
        return []
    for key in ("trafficPolicy", "exportTo"):
        if key in spec:
            notes.ignored(f"spec.{key}")
    out = []
    for i, subset in enumerate(spec.get("subsets") or []):
        where = f"spec.subsets[{i}]"
        notes.unknown(subset, where, {"name", "labels"})
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
    return out


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
