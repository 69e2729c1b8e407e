"""SMI TrafficSplit (`split.smi-spec.io` v1alpha1-v1alpha4) -> Route, with the
HTTPRouteGroups (`specs.smi-spec.io`) its `matches` name, given in the same apply. Pure.

SMI's semantics kept: the weights are relative (v1alpha1's are quantities, `500m`); with
`matches`, only requests that match one of the groups' routes are split, and every other
request goes to the root service itself; a group's route ANDs its path (a regex anchored at
the start only), methods (`*` = any) and header regexes, and its routes are ORed.
"""

from __future__ import annotations

from typing import Any

from ._linkerd import _weight
from ._names import rule_name
from ._notes import Notes

GROUP_VERSIONS = ("v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4")


def _headers(value: Any) -> list[dict[str, Any]]:
    # v1alpha4 writes a map (`user-agent: ".*Firefox.*"`); its split example, a list of maps.
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.extend({"name": str(k).lower(), "regex": str(v)} for k, v in item.items())
    return out


def _route_match(route: Any, where: str, notes: Notes) -> dict[str, Any] | None:
    if not isinstance(route, dict):
        notes.problem(where, "expected a route object")
        return None
    notes.unknown(route, where, {"name", "pathRegex", "methods", "headers"})
    out: dict[str, Any] = {}
    path = route.get("pathRegex")
    if path not in (None, "", ".*"):
        out["path"] = {"regex": f"(?:{path}).*"}  # anchored at the start only, as SMI says
    methods = [str(m).upper() for m in route.get("methods") or [] if m != "*"]
    if methods and "*" not in (route.get("methods") or []):
        out["method"] = methods if len(methods) > 1 else methods[0]
    headers = _headers(route.get("headers"))
    if headers:
        out["headers"] = headers
    return out


def _matches(
    refs: Any, groups: dict[str, dict[str, Any]], notes: Notes
) -> tuple[str, list[dict[str, Any]]] | None:
    entries: list[dict[str, Any]] = []
    names: list[str] = []
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        where = f"spec.matches[{i}]"
        name = ref.get("name") if isinstance(ref, dict) else None
        if not isinstance(ref, dict) or ref.get("kind", "HTTPRouteGroup") != "HTTPRouteGroup":
            notes.problem(where, "only HTTPRouteGroup matches can split HTTP requests")
            return None
        group = groups.get(str(name))
        if group is None:
            notes.problem(
                where,
                f"HTTPRouteGroup {name!r} is not in this apply: give it together with the "
                "TrafficSplit (without it, SMI splits no request)",
            )
            return None
        names.append(str(name))
        routes = (group.get("spec") or {}).get("matches")
        if routes is None and "matches" in group:
            # The TrafficSplit spec's own A/B example writes the routes beside `metadata`.
            notes.ignored(
                f"{where} (HTTPRouteGroup {name}).matches",
                "belongs in spec: read as spec.matches",
            )
            routes = group["matches"]
        if not isinstance(routes, list) or not routes:
            notes.problem(where, f"HTTPRouteGroup {name!r} has no spec.matches to split by")
            return None
        for j, route in enumerate(routes):
            entry = _route_match(route, f"{where} (HTTPRouteGroup {name}).matches[{j}]", notes)
            if entry is not None:
                entries.append(entry)
    if any(not e for e in entries):
        entries = []  # a route that matches everything: the split takes every request
    return "-".join(names) or "matches", entries


def convert_traffic_split(
    doc: dict[str, Any], notes: Notes, groups: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(spec, "spec", {"service", "backends", "matches"})
    service = notes.service(spec.get("service"))
    if service is None:
        notes.problem("spec.service", f"{spec.get('service')!r} is not a service")
        return []
    backends = []
    for i, b in enumerate(spec.get("backends") or []):
        target = notes.service(b.get("service"))
        if target is None:
            notes.problem(f"spec.backends[{i}].service", "does not name a service")
            continue
        weight = b.get("weight", 0)
        if not isinstance(weight, int):
            weight = _weight(weight)  # v1alpha1 weights are quantities: "500m"
        if weight < 0:
            notes.problem(f"spec.backends[{i}].weight", f"{b.get('weight')!r} is not a weight")
            continue
        backends.append({"service": target, "weight": weight})
    if not backends:
        notes.problem("spec.backends", "no backends")
        return []
    rules: list[dict[str, Any]] = [{"name": "default", "backends": backends}]
    if spec.get("matches"):
        found = _matches(spec["matches"], groups, notes)
        if found is None:
            return []
        name, entries = found
        if entries:
            split = {"name": rule_name(name, "matches", {"default"}), "match": entries}
            # Requests no group matches go to the root service itself, as SMI says.
            rules = [{**split, "backends": backends}, {"name": "default"}]
    spec_out = {"service": service, "unmatched": "reject", "rules": rules}
    return [_doc("Route", service, spec_out)]


def convert_route_group(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    """An HTTPRouteGroup makes nothing itself: a TrafficSplit of the same apply reads it."""
    return []


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
