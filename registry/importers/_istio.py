"""Istio VirtualService -> Route (`networking.istio.io` v1beta1, v1, v1alpha3); the
DestinationRule is `_istio_destination`. Pure.

Istio's semantics kept: `http[]` in order, the first that matches wins (`precedence:
order`); a request no rule takes gets 404 (`unmatched: reject`); `match[]` entries are ORed,
fields in one ANDed; `uri.prefix` is a string prefix; regexes match whole values. Istio's
implicit retries (2 on connect-failure, refused-stream, unavailable, cancelled and 503) are
written out, and only for idempotent requests: said in a note, never silently.
"""

from __future__ import annotations

from typing import Any

from ._gateways import gateway_of, gateway_routes, hosts_of
from ._names import rule_name
from ._notes import Notes

_RETRY_ON = {
    "gateway-error": "gateway-error",
    "connect-failure": "reset",
    "refused-stream": "reset",
    "reset": "reset",
    "retriable-4xx": 409,
    # gRPC: the grpc-status of an answer without a response message
    "cancelled": "cancelled",
    "deadline-exceeded": "deadline-exceeded",
    "resource-exhausted": "resource-exhausted",
    "internal": "internal",
    "unavailable": "unavailable",
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
        # `percent` is the integer field before `percentage`; Istio's own samples still use it.
        notes.unknown(abort, f"{path}.abort", {"httpStatus", "grpcStatus", "percentage", "percent"})
        percent = _percent(abort.get("percentage"), abort.get("percent"))
        if "httpStatus" in abort:
            out["abort"] = {"status": abort["httpStatus"], "percent": percent}
        elif "grpcStatus" in abort:
            code = _GRPC_CODES.get(str(abort["grpcStatus"]).upper())
            if code is None:
                notes.problem(
                    f"{path}.abort.grpcStatus",
                    f"{abort['grpcStatus']!r} is not a gRPC status name (UNAVAILABLE, ...)",
                )
            else:
                # HTTP/1.1 callers get the code's HTTP equivalent (Envoy's mapping).
                out["abort"] = {"status": _GRPC_TO_HTTP[code], "grpcStatus": code}
                out["abort"]["percent"] = percent
    return out or None


# gRPC status names (Istio's `grpcStatus` takes the name, e.g. UNAVAILABLE) and the HTTP
# status Envoy answers each with (grpc/doc/statuscodes.md; Envoy's grpcToHttpStatus).
_GRPC_CODES = {
    name: i
    for i, name in enumerate(
        [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ]
    )
    if i
}
_GRPC_TO_HTTP = dict(
    enumerate([200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401])
)


# Istio's default retry conditions (also what `retries` without `retryOn` retries on):
# connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes with 503.
_DEFAULT_ON: list[Any] = ["reset", "unavailable", "cancelled", 503]


def _retries(retries: Any, path: str, notes: Notes) -> dict[str, Any]:
    if retries is None:
        notes.note(
            path,
            "absent: Istio would retry twice on connect-failure, refused-stream, "
            "unavailable, cancelled and 503, POSTs included; imported explicitly as "
            "retries {attempts: 2, retryOn: [reset, unavailable, cancelled, 503]} for "
            "idempotent requests only",
        )
        return {"attempts": 2, "retryOn": list(_DEFAULT_ON)}
    notes.unknown(
        retries, path, {"attempts", "perTryTimeout", "retryOn", "retryIgnorePreviousHosts"}
    )
    out: dict[str, Any] = {"attempts": min(int(retries.get("attempts", 2)), 10)}
    conditions: list[Any] = []
    tokens = [t.strip() for t in str(retries.get("retryOn", "")).split(",") if t.strip()]
    for token in tokens:
        if token == "retriable-status-codes":
            continue  # the codes listed beside it are the statuses retried
        if token.isdigit():
            mapped: list[Any] = [int(token)]
        elif token == "5xx":
            mapped = ["5xx", "reset"]  # Envoy's 5xx also retries a connection that failed
        elif token in _RETRY_ON:
            mapped = [_RETRY_ON[token]]
        else:
            notes.ignored(f"{path}.retryOn", f"condition {token!r} is not supported and is ignored")
            mapped = []
        conditions.extend(m for m in mapped if m not in conditions)
    if "retriable-status-codes" in tokens and not any(isinstance(c, int) for c in conditions):
        notes.ignored(
            f"{path}.retryOn", "retriable-status-codes lists no status codes: nothing to retry"
        )
    if not tokens and out["attempts"]:
        conditions = list(_DEFAULT_ON)  # Istio keeps its default conditions
    if conditions:
        out["retryOn"] = conditions
    elif out["attempts"]:
        out["attempts"] = 0  # nothing Weft can retry on: no retries rather than its default
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
        "rewrite",
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
        target = notes.service(d.get("host"))
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
    fault = (
        _fault(rule["fault"], f"{where}.fault", notes)
        if isinstance(rule.get("fault"), dict)
        else None
    )
    retries = rule.get("retries")
    if fault:
        out["fault"] = fault
        # Istio: "timeouts or retries will not be enabled when faults are enabled on the
        # client side" (HTTPRoute.fault), so a faulty rule has neither, implicit or written.
        for key in ("timeout", "retries"):
            if key in rule:
                notes.ignored(
                    f"{where}.{key}",
                    "is ignored: Istio enables no timeout or retries on a rule with a fault",
                )
        if "retries" not in rule:
            notes.note(
                f"{where}.retries",
                "absent, with a fault: Istio enables no retries on a rule with a fault, "
                "so none are imported (not even its implicit ones)",
            )
        return _rest(rule, where, notes, out)
    if rule.get("timeout"):
        out["timeout"] = rule["timeout"]
    if isinstance(retries, dict) and retries.get("perTryTimeout"):
        out["perTryTimeout"] = retries["perTryTimeout"]
    out["retries"] = _retries(retries, f"{where}.retries", notes)
    return _rest(rule, where, notes, out)


def _rest(rule: dict[str, Any], where: str, notes: Notes, out: dict[str, Any]) -> dict[str, Any]:
    """A rule's path rewrite, mirror and header changes."""
    rewrite = rule.get("rewrite")
    if isinstance(rewrite, dict):
        notes.unknown(rewrite, f"{where}.rewrite", {"uri"})
        if rewrite.get("uri"):
            # Istio: the prefix the request matched is replaced, else the whole path.
            out["rewrite"] = {"prefix": rewrite["uri"]}
    mirror = rule.get("mirror")
    if isinstance(mirror, dict) and notes.service(mirror.get("host")):
        m: dict[str, Any] = {"service": notes.service(mirror["host"])}
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
        service = notes.service(host)
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


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
