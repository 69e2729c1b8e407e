"""Which importer reads a document, and the result of reading a batch. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import (
    _gateway_api,
    _gateways,
    _istio,
    _istio_destination,
    _istio_service_entry,
    _linkerd,
    _smi,
)
from ._names import Naming, rule_name
from ._notes import Notes

Importer = Callable[[dict[str, Any], Notes], list[dict[str, Any]]]


def _no_groups(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    return _smi.convert_traffic_split(doc, notes, {})


_IMPORTERS: dict[tuple[str, str], Importer] = {
    ("linkerd.io/v1alpha2", "ServiceProfile"): _linkerd.convert,
    **{
        (f"networking.istio.io/{v}", "VirtualService"): _istio.convert_virtual_service
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"networking.istio.io/{v}", "DestinationRule"): _istio_destination.convert_destination_rule
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"networking.istio.io/{v}", "Gateway"): _gateways.convert_istio_gateway
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"networking.istio.io/{v}", "ServiceEntry"): _istio_service_entry.convert_service_entry
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"gateway.networking.k8s.io/{v}", "HTTPRoute"): _gateway_api.convert_http_route
        for v in ("v1", "v1beta1")
    },
    **{
        (f"gateway.networking.k8s.io/{v}", "Gateway"): _gateways.convert_api_gateway
        for v in ("v1", "v1beta1")
    },
    # Linkerd's own HTTPRoute (the one its docs use): the Gateway API schema, same importer.
    **{
        (f"policy.linkerd.io/{v}", "HTTPRoute"): _gateway_api.convert_http_route
        for v in ("v1beta1", "v1beta2", "v1beta3")
    },
    # A TrafficSplit reads the HTTPRouteGroups of its apply (`convert` hands them over).
    **{(f"split.smi-spec.io/{v}", "TrafficSplit"): _no_groups for v in _smi.GROUP_VERSIONS},
    **{
        (f"specs.smi-spec.io/{v}", "HTTPRouteGroup"): _smi.convert_route_group
        for v in _smi.GROUP_VERSIONS
    },
}

KINDS = sorted({kind for _, kind in _IMPORTERS})


def is_foreign(doc: Any) -> bool:
    """A document of a kind some importer reads (a weft.dev/v1 one is not)."""
    return isinstance(doc, dict) and (doc.get("apiVersion"), doc.get("kind")) in _IMPORTERS


@dataclass
class Imported:
    docs: list[Any] = field(default_factory=list)  # Weft documents, in order
    sources: list[int] = field(default_factory=list)  # the input index each came from
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def convert(docs: Sequence[Any], naming: Naming | None = None) -> Imported:
    """Every foreign document as Weft documents; weft.dev/v1 documents pass unchanged.
    HTTPRoutes of one Service are merged into its one Route, as Gateway API merges them.
    `naming` maps a Kubernetes (name, namespace) to a registry service; the default is the
    documented rule (the name itself, see `_names`)."""
    result = Imported()
    groups = {
        str((d.get("metadata") or {}).get("name")): d
        for d in docs
        if is_foreign(d) and d["kind"] == "HTTPRouteGroup"
    }
    for i, doc in enumerate(docs):
        if not is_foreign(doc):
            result.docs.append(doc)
            result.sources.append(i)
            continue
        meta = doc.get("metadata") or {}
        namespace = meta.get("namespace")
        notes = Notes(
            f"{doc['kind']} {meta.get('name', '?')}",
            namespace=namespace if isinstance(namespace, str) else None,
            naming=naming,
        )
        try:
            if doc["kind"] == "TrafficSplit":
                made = _smi.convert_traffic_split(doc, notes, groups)
            else:
                made = _IMPORTERS[(doc["apiVersion"], doc["kind"])](doc, notes)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # A malformed anchor document (a list where an object belongs...) is refused, named.
            notes.problem("(document)", f"cannot be read: {type(exc).__name__}: {exc}")
            made = []
        result.docs.extend(made)
        result.sources.extend([i] * len(made))
        result.warnings.extend(notes.warnings)
        result.notes.extend(notes.notes)
        result.problems.extend(notes.problems)
    named = {
        str(m.get("name"))
        for d in docs
        if is_foreign(d) and d["kind"] == "TrafficSplit"
        for m in ((d.get("spec") or {}).get("matches") or [])
        if isinstance(m, dict)
    }
    for name in sorted(set(groups) - named):
        result.warnings.append(
            f"HTTPRouteGroup {name}: no TrafficSplit of this apply names it: ignored "
            "(SMI access policy, TrafficTarget, is not imported)"
        )
    _merge_http_routes(result, docs)
    return result


def _merge_http_routes(result: Imported, docs: Sequence[Any]) -> None:
    """Several HTTPRoutes attached to one Service (Linkerd's books demo has three) make one
    Route whose rules are theirs: Gateway API ranks rules by specificity across the routes,
    then by the older route, then by "namespace/name"; Weft knows no ages, so name order."""
    groups: dict[str, list[int]] = {}
    for j, (doc, source) in enumerate(zip(result.docs, result.sources, strict=True)):
        origin = docs[source]
        # A gateway Route (a Gateway parent) is named after its HTTPRoute and stays its own.
        spec = doc.get("spec") or {}
        if doc.get("kind") == "Route" and origin.get("kind") == "HTTPRoute" and "service" in spec:
            groups.setdefault(spec["service"], []).append(j)
    drop: set[int] = set()
    for service, where in groups.items():
        if len(where) < 2:
            continue

        def key(j: int) -> tuple[str, str]:
            meta = docs[result.sources[j]].get("metadata") or {}
            return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

        ordered = sorted(where, key=key)
        taken: set[str] = set()
        rules = []
        for j in ordered:
            for rule in result.docs[j]["spec"]["rules"]:
                rules.append({**rule, "name": rule_name(rule["name"], "rule", taken)})
        # The merged Route takes the place (and file) of the first of them in the input.
        first = result.docs[where[0]]
        result.docs[where[0]] = {**first, "spec": {**first["spec"], "rules": rules}}
        drop.update(where[1:])
        names = ", ".join("/".join(filter(None, key(j))) for j in ordered)
        result.notes.append(
            f"HTTPRoute {names}: merged into Route {service}, rules ranked by specificity "
            "and then by route name (Gateway API ranks the older route first; Weft knows no ages)"
        )
    if drop:
        kept = [j for j in range(len(result.docs)) if j not in drop]
        result.docs = [result.docs[j] for j in kept]
        result.sources = [result.sources[j] for j in kept]
