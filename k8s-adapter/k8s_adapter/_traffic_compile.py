"""One conversion of traffic objects into Weft documents, and what it depended on. Pure.

A conversion is of a group (see `_traffic_objects`): the objects that make resources for the
same services, converted together by `registry.importers` (the code `weft apply -f` uses) so
HTTPRoutes of one Service merge and a TrafficSplit finds its HTTPRouteGroups. Names resolve
with the adapter's own naming; the names a conversion looked up are recorded, so a cached
result is reused only while every one of them still resolves the same way (a Service that
gains a `weft.io/service-name` annotation recomputes what names it). A gateway Route (a
Gateway parent, `gateways:`) is left out with a note: the cluster's Gateways are its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from registry import importers, resources

ORIGIN_LABEL = "weft.io/k8s-object"  # `VirtualService default/reviews` on what it made

ObjectKey = tuple[str, str, str]  # (kind, namespace, name); kind is CrdKind.key
GroupKey = tuple[ObjectKey, ...]  # sorted
ResourceKey = tuple[str, str]  # (Weft kind, name)
Lookups = dict[tuple[str, str | None], str | None]


def describe(key: ObjectKey) -> str:
    return f"{key[0]} {key[1]}/{key[2]}"


def describe_group(group: GroupKey) -> str:
    return ", ".join(describe(k) for k in group)


def version_of(raw: dict[str, Any]) -> str:
    return str((raw.get("metadata") or {}).get("resourceVersion") or "")


def resource_key(doc: dict[str, Any]) -> ResourceKey:
    return (doc["kind"], doc["metadata"]["name"])


def service_of_doc(doc: dict[str, Any]) -> str:
    """The service a Weft document is for: a Route's or Subset's spec.service, else (a
    ServiceDefaults) its name."""
    service = (doc.get("spec") or {}).get("service")
    return service if isinstance(service, str) else str(doc["metadata"]["name"])


@dataclass
class Compiled:
    """A conversion's Weft documents, or why it made none; its importer messages."""

    signature: tuple[tuple[ObjectKey, str], ...]  # the objects and versions converted
    lookups: Lookups = field(default_factory=dict)
    docs: list[dict[str, Any]] = field(default_factory=list)
    origins: list[list[ObjectKey]] = field(default_factory=list)  # per doc, who made it
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # deliberate differences, never refused
    problems: list[str] = field(default_factory=list)
    dropped: dict[ObjectKey, str] = field(default_factory=dict)  # lost a duplicate, why


class Namer:
    """The naming the importers use, recording what it answered."""

    def __init__(self, naming: importers.Naming | None) -> None:
        self.naming = naming
        self.lookups: Lookups = {}

    def __call__(self, name: str, namespace: str | None) -> str | None:
        found = self.naming(name, namespace) if self.naming else name
        self.lookups[(name, namespace)] = found
        return found

    def still_valid(self, lookups: Lookups) -> bool:
        return all(self(n, ns) == v for (n, ns), v in lookups.items())


def convert(
    members: Sequence[tuple[ObjectKey, dict[str, Any]]],
    naming: importers.Naming | None,
    made_by: dict[ObjectKey, set[ResourceKey]] | None = None,
) -> Compiled:
    """Convert `members` together. `made_by` (what each object makes alone) attributes a
    merged document to every object that would make it; without it, to its first source."""
    namer = Namer(naming)
    out = Compiled(tuple((k, version_of(raw)) for k, raw in members))
    imported = importers.convert([raw for _, raw in members], namer)
    out.lookups = namer.lookups
    out.warnings = list(imported.warnings)
    out.notes = list(imported.notes)
    if imported.problems:
        out.problems = list(imported.problems)
        return out
    seen: dict[ResourceKey, ObjectKey] = {}
    lost: set[tuple[ObjectKey, ResourceKey]] = set()
    for doc, source in zip(imported.docs, imported.sources, strict=True):
        if not isinstance(doc, dict):
            continue
        first = members[source][0]
        rkey = resource_key(doc)
        if doc.get("kind") == "Route" and "gateway" in (doc.get("spec") or {}):
            # The cluster's Gateways belong to its own ingress (Weft does not sync them): only
            # the mesh half of an object with a Gateway parent or `gateways:` is synced.
            out.notes.append(
                f"{describe(first)}: gateway Route {rkey[1]} is not synced (the cluster's "
                "Gateways belong to its own ingress; only mesh routing is)"
            )
            continue
        if rkey in seen:
            # Two objects of one group make one resource (a VirtualService and an HTTPRoute
            # for one service): the first in (kind, namespace, name) order keeps it.
            out.dropped[first] = f"{rkey[0]} {rkey[1]} is already made by {describe(seen[rkey])}"
            lost.add((first, rkey))
            continue
        seen[rkey] = first
        out.docs.append(doc)
    for doc in out.docs:
        rkey = resource_key(doc)
        origins = [
            k for k, _ in members if rkey in (made_by or {}).get(k, ()) and (k, rkey) not in lost
        ] or [seen[rkey]]
        meta = doc.setdefault("metadata", {})
        meta["labels"] = {
            **(meta.get("labels") or {}),
            ORIGIN_LABEL: ", ".join(describe(k) for k in origins),
        }
        out.origins.append(origins)
    _, problems = resources.validate_all(out.docs)
    if problems:
        out.problems, out.docs, out.origins = problems, [], []
        return out
    if not out.docs:
        out.problems = ["it makes no Weft resource"]
    return out
