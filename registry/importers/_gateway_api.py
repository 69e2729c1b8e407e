"""Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`, the GAMMA mesh form: a Service
parentRef; also Linkerd's `policy.linkerd.io` HTTPRoute, the same schema, and its retry and
timeout annotations) -> Route. Pure. (SMI TrafficSplit is `_smi`.)

HTTPRoute's semantics kept: rules by specificity (`precedence: specificity`), no match is a
404 (`unmatched: reject`), `PathPrefix` by whole segments, matches default to every request,
`timeouts.request` covers the retries and `backendRequest` one attempt, `retry.attempts`
retries after the first try.
"""

from __future__ import annotations

from typing import Any

from ._gateways import gateway_routes, hosts_of
from ._linkerd_annotations import rule_policy
from ._names import rule_name
from ._notes import Notes

_PATH = {"PathPrefix": "segmentPrefix", "Exact": "exact", "RegularExpression": "regex"}
_VALUE = {"Exact": "exact", "RegularExpression": "regex"}


def _values(items: Any, path: str, notes: Notes) -> list[dict[str, Any]]:
    out = []
    for i, h in enumerate(items or []):
        op = _VALUE.get(h.get("type", "Exact"))
        if op is None:
            notes.ignored(f"{path}[{i}].type", f"{h.get('type')!r} is not supported; ignored")
            continue
        out.append({"name": h["name"], op: h.get("value", "")})
    return out


def _match(m: dict[str, Any], path: str, notes: Notes) -> dict[str, Any]:
    notes.unknown(m, path, {"path", "headers", "queryParams", "method"})
    out: dict[str, Any] = {}
    p = m.get("path") or {}
    op = _PATH.get(p.get("type", "PathPrefix"))
    value = p.get("value", "/")
    if op is None:
        notes.ignored(f"{path}.path.type", f"{p.get('type')!r} is not supported; ignored")
    elif not (op == "segmentPrefix" and value == "/"):
        out["path"] = {op: value}
    if m.get("method"):
        out["method"] = m["method"]
    if m.get("headers"):
        out["headers"] = _values(m["headers"], f"{path}.headers", notes)
    if m.get("queryParams"):
        out["query"] = _values(m["queryParams"], f"{path}.queryParams", notes)
    return out


def _modifier(f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("set", "add"):
        if f.get(key):
            out[key] = {h["name"]: h["value"] for h in f[key]}
    if f.get("remove"):
        out["remove"] = list(f["remove"])
    return out


def _filters(filters: Any, path: str, rule: dict[str, Any], notes: Notes) -> None:
    for i, f in enumerate(filters or []):
        kind = f.get("type")
        where = f"{path}[{i}]"
        if kind == "RequestHeaderModifier":
            rule["requestHeaders"] = _modifier(f.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            rule["responseHeaders"] = _modifier(f.get("responseHeaderModifier") or {})
        elif kind == "RequestMirror":
            mirror = f.get("requestMirror") or {}
            target = notes.service((mirror.get("backendRef") or {}).get("name"))
            if target is None:
                notes.problem(f"{where}.requestMirror.backendRef", "does not name a service")
                continue
            percent = 100.0
            if "percent" in mirror:
                percent = float(mirror["percent"])
            elif isinstance(mirror.get("fraction"), dict):
                frac = mirror["fraction"]
                percent = 100.0 * frac.get("numerator", 0) / (frac.get("denominator") or 100)
            rule["mirror"] = {"service": target, "percent": percent}
        elif kind == "URLRewrite":
            rewrite = f.get("urlRewrite") or {}
            notes.unknown(rewrite, f"{where}.urlRewrite", {"path"})
            p = rewrite.get("path") or {}
            if p.get("type") == "ReplaceFullPath":
                rule["rewrite"] = {"fullPath": p.get("replaceFullPath", "/")}
            elif p.get("type") == "ReplacePrefixMatch":
                rule["rewrite"] = {"prefix": p.get("replacePrefixMatch", "/")}
            elif p:
                notes.ignored(f"{where}.urlRewrite.path", f"type {p.get('type')!r} is unknown")
        else:
            notes.ignored(f"{where}", f"(type {kind}) is not supported and is ignored")


def _rule(
    r: dict[str, Any], i: int, fallback: str, taken: set[str], notes: Notes
) -> dict[str, Any]:
    where = f"spec.rules[{i}]"
    notes.unknown(r, where, {"name", "matches", "filters", "backendRefs", "timeouts", "retry"})
    rule: dict[str, Any] = {"name": rule_name(r.get("name"), fallback, taken)}
    matches = [
        _match(m, f"{where}.matches[{j}]", notes) for j, m in enumerate(r.get("matches") or [])
    ]
    _filters(r.get("filters"), f"{where}.filters", rule, notes)
    if "prefix" in rule.get("rewrite", {}):
        # ReplacePrefixMatch replaces the PathPrefix matched, "/" when none is written.
        matches = [
            m if "path" in m else {"path": {"segmentPrefix": "/"}, **m} for m in matches or [{}]
        ]
    if matches and all(matches):
        rule["match"] = matches
    backends = []
    for j, ref in enumerate(r.get("backendRefs") or []):
        bwhere = f"{where}.backendRefs[{j}]"
        if ref.get("kind", "Service") != "Service":
            notes.ignored(bwhere, f"(kind {ref.get('kind')}) is not a Service; ignored")
            continue
        for key in ("filters", "namespace"):
            if key in ref:
                notes.ignored(f"{bwhere}.{key}")
        target = notes.service(ref.get("name"))
        if target is None:
            notes.problem(f"{bwhere}.name", f"{ref.get('name')!r} is not a service")
            continue
        backends.append({"service": target, "weight": int(ref.get("weight", 1))})
    if backends:
        rule["backends"] = backends
    timeouts = r.get("timeouts") or {}
    for src, dst in (("request", "timeout"), ("backendRequest", "perTryTimeout")):
        if timeouts.get(src) and timeouts[src] not in ("0s", "0"):  # 0s disables the timeout
            rule[dst] = timeouts[src]
    retry = r.get("retry")
    if isinstance(retry, dict):
        notes.unknown(retry, f"{where}.retry", {"codes", "attempts"})
        rule["retries"] = {
            "attempts": min(int(retry.get("attempts", 1)), 10),
            "retryOn": list(retry.get("codes") or ["gateway-error"]),
        }
    return rule


def convert_http_route(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"parentRefs", "hostnames", "rules"})
    services: list[str] = []
    gateways: list[str] = []
    own_namespace = (doc.get("metadata") or {}).get("namespace")
    for i, ref in enumerate(spec.get("parentRefs") or []):
        kind = ref.get("kind", "Gateway")
        group = ref.get("group", "gateway.networking.k8s.io" if kind == "Gateway" else "")
        if kind == "Service" and group in ("", "core"):
            name = notes.service(ref.get("name"), ref.get("namespace"))
            if name is not None:
                services.append(name)
            if ref.get("namespace") not in (None, "", own_namespace):
                notes.ignored(
                    f"spec.parentRefs[{i}].namespace",
                    "is ignored: a consumer route (another namespace's Service) applies to "
                    "every caller in Weft, not only to callers in the route's namespace",
                )
        elif kind == "Gateway" and group == "gateway.networking.k8s.io" and ref.get("name"):
            gateways.append(str(ref["name"]))
            for key in ("sectionName", "port"):
                if key in ref:
                    notes.ignored(f"spec.parentRefs[{i}].{key}")
        else:
            notes.ignored(
                f"spec.parentRefs[{i}]",
                f"(kind {kind}) is neither a Service (mesh) nor a Gateway (ingress)",
            )
    if spec.get("hostnames") and services and not gateways:
        notes.ignored("spec.hostnames", "is ignored: a mesh route matches its Service's traffic")
    if not services and not gateways:
        notes.problem(
            "spec.parentRefs", "no Service or Gateway parent: nothing in the mesh to route"
        )
        return []
    taken: set[str] = set()
    # An unnamed rule is named after its HTTPRoute (Linkerd's `route` metric label), with
    # its index when the route has several.
    given = spec.get("rules") or [{}]
    route = rule_name((doc.get("metadata") or {}).get("name"), "rule", set())
    rules = [
        _rule(r, i, route if len(given) == 1 else f"{route}-{i}", taken, notes)
        for i, r in enumerate(given)
    ]
    # Linkerd's retry and timeout annotations cover every rule and win over its fields.
    policy = rule_policy((doc.get("metadata") or {}).get("annotations"), notes)
    for rule in rules:
        rule.update(policy)
    out = gateway_routes(
        str((doc.get("metadata") or {}).get("name")),
        gateways,
        hosts_of(spec.get("hostnames"), notes, "spec.hostnames") or ["*"],
        rules,
        {"precedence": "specificity", "unmatched": "reject"},
        notes,
        mesh=bool(services),
    )
    return out + [
        _doc(
            "Route",
            s,
            {"service": s, "precedence": "specificity", "unmatched": "reject", "rules": rules},
        )
        for s in dict.fromkeys(services)
    ]


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
