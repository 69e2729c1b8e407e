"""Linkerd ServiceProfile (`linkerd.io/v1alpha2`) -> Route + ServiceDefaults. Pure.

Linkerd's semantics kept: the first route in list order wins (`precedence: order`) and other
requests take the service's default route; `pathRegex` is trimmed and always anchored to the
whole path (the proxy adds `^`/`$` when missing; Weft's regexes are whole-path already);
the fields of one condition are ANDed (what the controller does, whatever the docs say);
`isRetryable` retries what the route's response classes call a failure, for any method (the
route's author said it is safe), bounded by the retry budget; `timeout` covers the retries.
"""

from __future__ import annotations

from typing import Any

from ._names import rule_name
from ._notes import Notes

# Linkerd bounds retries by the budget alone; Weft also caps each request (its model's most).
RETRY_ATTEMPTS = 3


def _anchored(regex: str) -> str:
    regex = regex.strip()
    if regex.startswith("^"):
        regex = regex[1:]
    if regex.endswith("$") and not regex.endswith("\\$"):
        regex = regex[:-1]
    return regex


def _request_match(cond: Any, path: str, notes: Notes) -> dict[str, Any]:
    if not isinstance(cond, dict):
        notes.problem(path, "expected a condition object")
        return {}
    out: dict[str, Any] = {}
    if "method" in cond:
        out["method"] = str(cond["method"]).upper()
    if "pathRegex" in cond:
        out["path"] = {"regex": _anchored(str(cond["pathRegex"]))}
    for key in ("all", "any"):
        if key in cond:
            items = cond[key] if isinstance(cond[key], list) else []
            out[key] = [_request_match(c, f"{path}.{key}[{i}]", notes) for i, c in enumerate(items)]
    if "not" in cond:
        out["not"] = _request_match(cond["not"], f"{path}.not", notes)
    notes.unknown(cond, path, {"method", "pathRegex", "all", "any", "not"})
    return out


def _response_class(rc: Any, path: str, notes: Notes) -> dict[str, Any] | None:
    cond = rc.get("condition") if isinstance(rc, dict) else None
    status = cond.get("status") if isinstance(cond, dict) else None
    if not isinstance(cond, dict) or not isinstance(status, dict) or set(cond) != {"status"}:
        notes.ignored(f"{path}.condition", "is supported only as a single status range; ignored")
        return None
    low = status.get("min", 100)
    high = status.get("max")
    if high is None:
        if "min" in status:
            # Linkerd's proxy drops such a class (max 0 is no status); its docs say "exactly
            # min": Weft does what the docs say.
            notes.note(f"{path}.condition.status", f"no max: read as exactly {low}")
        high = low if "min" in status else 599
    return {"status": {"min": low, "max": high}, "failure": bool(rc.get("isFailure", False))}


def _weight(value: Any) -> int:
    """A Kubernetes quantity (`500m`, `1`, `50`) as an integer weight in thousandths."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return -1
    return round(number * 1000)


def convert(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    meta = doc.get("metadata") or {}
    service = notes.service(meta.get("name"))
    if service is None:
        notes.problem("metadata.name", f"{meta.get('name')!r} does not name a service")
        return []
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"routes", "retryBudget", "dstOverrides", "opaquePorts"})
    if "opaquePorts" in spec:
        notes.ignored(
            "spec.opaquePorts", "is ignored: opaque services are declared in the registry"
        )
    out: list[dict[str, Any]] = []
    defaults: dict[str, Any] = {}
    budget = spec.get("retryBudget")
    if isinstance(budget, dict):
        notes.unknown(budget, "spec.retryBudget", {"retryRatio", "minRetriesPerSecond", "ttl"})
        defaults["retryBudget"] = {
            k: budget[src]
            for k, src in (
                ("ratio", "retryRatio"),
                ("minPerSecond", "minRetriesPerSecond"),
                ("ttl", "ttl"),
            )
            if src in budget
        }
    backends: list[dict[str, Any]] = []
    for i, d in enumerate(spec.get("dstOverrides") or []):
        where = f"spec.dstOverrides[{i}]"
        target = notes.service(d.get("authority") if isinstance(d, dict) else None)
        weight = _weight(d.get("weight", 1)) if isinstance(d, dict) else -1
        if target is None or weight < 0:
            notes.problem(where, "needs an authority naming a service and a weight")
        elif weight > 0:  # Linkerd drops weight-0 overrides
            backends.append({"service": target, "weight": weight})
    rules: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, route in enumerate(spec.get("routes") or []):
        where = f"spec.routes[{i}]"
        if not isinstance(route, dict):
            notes.problem(where, "expected a route object")
            continue
        route = _misplaced(route, where, notes)
        notes.unknown(
            route, where, {"name", "condition", "responseClasses", "isRetryable", "timeout"}
        )
        rule: dict[str, Any] = {"name": rule_name(route.get("name"), f"route-{i}", taken)}
        if "condition" in route:
            rule["match"] = [_request_match(route["condition"], f"{where}.condition", notes)]
        classes = [
            c
            for j, rc in enumerate(route.get("responseClasses") or [])
            if (c := _response_class(rc, f"{where}.responseClasses[{j}]", notes)) is not None
        ]
        if classes:
            rule["responseClasses"] = classes
        if route.get("timeout"):
            rule["timeout"] = route["timeout"]
        if route.get("isRetryable"):
            rule["retries"] = {
                "attempts": RETRY_ATTEMPTS,
                "retryOn": _failures(classes, where, notes),
                "nonIdempotent": True,
            }
        if backends:
            rule["backends"] = backends
        rules.append(rule)
    if rules or backends:
        route_spec: dict[str, Any] = {"service": service, "precedence": "order", "rules": rules}
        if backends:
            # dstOverrides split every request, routed or not: a last catch-all rule carries it.
            route_spec["unmatched"] = "reject"
            rules.append({"name": "default", "backends": backends})
        out.append(_doc("Route", service, route_spec))
    if defaults:
        out.append(_doc("ServiceDefaults", service, defaults))
    return out


def _failures(classes: list[dict[str, Any]], path: str, notes: Notes) -> list[Any]:
    """retryOn for what the classes call a failure (the first class holding a status decides;
    otherwise 5xx is a failure): `5xx` when all of 500-599 are, plus the other codes."""

    def failure(status: int) -> bool:
        for c in classes:
            if c["status"]["min"] <= status <= c["status"]["max"]:
                return bool(c["failure"])
        return status >= 500

    codes = [s for s in range(100, 600) if failure(s)]
    out: list[Any] = []
    if all(failure(s) for s in range(500, 600)):
        out.append("5xx")
        codes = [s for s in codes if s < 500]
    if len(out) + len(codes) > 16:
        notes.ignored(
            f"{path}.responseClasses",
            f"calls {len(codes)} statuses failures: only "
            "the first retry on them (Weft retries on at most 16 conditions)",
        )
    return (out + codes)[:16] or ["5xx"]


def _misplaced(route: dict[str, Any], where: str, notes: Notes) -> dict[str, Any]:
    """Route fields written inside `condition` (a slip the talk's own slides make): Linkerd's
    API server would prune them silently; Weft reads them where they belong, and says so."""
    cond = route.get("condition")
    if not isinstance(cond, dict):
        return route
    moved = {k: cond[k] for k in ("name", "isRetryable", "timeout", "responseClasses") if k in cond}
    if not moved:
        return route
    fixed = {**route, "condition": {k: v for k, v in cond.items() if k not in moved}}
    for key, value in moved.items():
        if key not in route:
            fixed[key] = value
        notes.ignored(
            f"{where}.condition.{key}",
            f"belongs to the route, not its condition: read as {where}.{key}",
        )
    return fixed


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
