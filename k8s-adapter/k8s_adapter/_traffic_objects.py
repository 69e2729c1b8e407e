"""The other meshes' traffic CRDs the adapter watches, and what they compile into. Pure.

    VirtualService, DestinationRule   networking.istio.io   v1, v1beta1, v1alpha3
    ServiceProfile                    linkerd.io            v1alpha2
    HTTPRoute                         gateway.networking.k8s.io  v1, v1beta1
    TrafficSplit                      split.smi-spec.io     v1alpha4 ... v1alpha1

Each kind is watched at the first of its versions the cluster serves (the API server converts
between served versions, so one is enough). Objects compile with `registry.importers`, the
very code `weft apply -f` uses, then pass `registry.resources`' checks, one object at a time,
so a bad object is skipped whole (named, with the reason) and never changes the registry: an
object that was good and turns bad keeps its last good version's resources (as the informer
keeps the last good version of an object that comes back undecodable); only its deletion
removes them.
A gateway Route (from a VirtualService's `gateways:` or an HTTPRoute's Gateway parent) is left
out, with a note: the cluster's Gateways are its own ingress's, which Weft does not sync, so
only the mesh half of such an object is kept (one with no mesh half makes nothing).
Two objects that would make the same Weft resource: the first in (kind, namespace, name)
order keeps it and the other is skipped, as the Service name mapping does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from registry import importers, resources

from ._objects import Key, Kind

ORIGIN_LABEL = "weft.io/k8s-object"  # `VirtualService default/reviews` on what it made


@dataclass(frozen=True)
class CrdKind:
    name: str
    plural: str
    group: str
    versions: tuple[str, ...]  # the importer's, most preferred first


TRAFFIC_KINDS = (
    CrdKind(
        "VirtualService", "virtualservices", "networking.istio.io", ("v1", "v1beta1", "v1alpha3")
    ),
    CrdKind(
        "DestinationRule", "destinationrules", "networking.istio.io", ("v1", "v1beta1", "v1alpha3")
    ),
    CrdKind("ServiceProfile", "serviceprofiles", "linkerd.io", ("v1alpha2",)),
    CrdKind("HTTPRoute", "httproutes", "gateway.networking.k8s.io", ("v1", "v1beta1")),
    CrdKind(
        "TrafficSplit",
        "trafficsplits",
        "split.smi-spec.io",
        ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"),
    ),
)


@dataclass(frozen=True)
class _Meta:
    name: str
    namespace: str
    resource_version: str


class CustomObject:
    """A custom object as the API server sent it (`raw`), with the metadata the informer
    needs. Items of a list carry no kind/apiVersion: they are filled in from the list's."""

    api_version: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __init__(self, raw: dict[str, Any], metadata: _Meta) -> None:
        self.raw = raw
        self.metadata = metadata

    @classmethod
    def from_dict(cls, raw: Any) -> CustomObject:
        meta = raw.get("metadata")
        if not isinstance(meta, dict):
            raise ValueError("$.metadata: expected an object")
        name, namespace = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or not isinstance(namespace, str):
            raise ValueError("$.metadata.name and $.metadata.namespace must be strings")
        if not isinstance(raw.get("spec"), dict):
            raise ValueError("$.spec: expected an object")
        full = {**raw, "apiVersion": raw.get("apiVersion") or cls.api_version, "kind": cls.kind}
        rv = meta.get("resourceVersion")
        return cls(full, _Meta(name, namespace, rv if isinstance(rv, str) else ""))


def watch_kind(crd: CrdKind, version: str) -> Kind[CustomObject]:
    """The informer's Kind for `crd` served at `version`."""
    model = type(
        f"{crd.name}Object",
        (CustomObject,),
        {"api_version": f"{crd.group}/{version}", "kind": crd.name},
    )
    return Kind(crd.name, crd.plural, crd.group, version, model)


ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


def describe(key: ObjectKey) -> str:
    return f"{key[0]} {key[1]}/{key[2]}"


@dataclass
class Compiled:
    """One object's Weft documents, or why it made none; its importer warnings."""

    version: str
    docs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # deliberate differences, never refused
    problems: list[str] = field(default_factory=list)


def compile_object(key: ObjectKey, raw: dict[str, Any], version: str) -> Compiled:
    out = Compiled(version)
    imported = importers.convert([raw])
    out.warnings = list(imported.warnings)
    out.notes = list(imported.notes)
    if imported.problems:
        out.problems = list(imported.problems)
        return out
    docs = []
    for doc in imported.docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "Route" and "gateway" in (doc.get("spec") or {}):
            out.notes.append(
                f"{describe(key)}: gateway Route {doc['metadata']['name']} is not synced (the "
                "cluster's Gateways belong to its own ingress; only mesh routing is)"
            )
            continue
        docs.append(doc)
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), ORIGIN_LABEL: describe(key)}
    _, problems = resources.validate_all(docs)
    if problems:
        out.problems = problems
        return out
    if not docs:
        out.problems = ["it makes no Weft resource"]
        return out
    out.docs = docs
    return out


ResourceKey = tuple[str, str]  # (Weft kind, name)


@dataclass
class Plan:
    """What the cluster's objects want in the registry: per object, its documents."""

    objects: dict[ObjectKey, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[ObjectKey, str] = field(default_factory=dict)  # why, for the log
    # Skipped in its newest version, kept as it last was good (also in `objects`).
    kept: set[ObjectKey] = field(default_factory=set)

    def resources(self) -> dict[ResourceKey, dict[str, Any]]:
        return {
            (d["kind"], d["metadata"]["name"]): d for docs in self.objects.values() for d in docs
        }


class TrafficObjects:
    """The watched objects (an informer Sink), compiled on demand and cached per version."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.on_change = on_change
        self._compiled: dict[ObjectKey, Compiled] = {}
        self._last_good: dict[ObjectKey, Compiled] = {}

    # -- informer Sink -------------------------------------------------------------------------

    def apply(self, kind: Kind[Any], event: str, obj: Any) -> None:
        key = (kind.name, obj.metadata.namespace, obj.metadata.name)
        if event == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj.raw
        self.on_change()

    def remove(self, kind: Kind[Any], key: Key) -> None:
        self.objects.pop((kind.name, *key), None)
        self.on_change()

    def replace(self, kind: Kind[Any], objects: list[Any], keep: list[Key]) -> None:
        kept = {(kind.name, *k) for k in keep}
        for key in [k for k in self.objects if k[0] == kind.name and k not in kept]:
            del self.objects[key]
        for obj in objects:
            self.objects[(kind.name, obj.metadata.namespace, obj.metadata.name)] = obj.raw
        self.on_change()

    # -- what they make ------------------------------------------------------------------------

    def compiled(self, key: ObjectKey) -> Compiled:
        raw = self.objects[key]
        version = str((raw.get("metadata") or {}).get("resourceVersion") or "")
        cached = self._compiled.get(key)
        if cached is None or cached.version != version or not version:
            cached = self._compiled[key] = compile_object(key, raw, version)
            if not cached.problems:
                self._last_good[key] = cached
        return cached

    def plan(self) -> Plan:
        for cache in (self._compiled, self._last_good):
            for gone in set(cache) - set(self.objects):
                del cache[gone]
        plan = Plan()
        claimed: dict[ResourceKey, ObjectKey] = {}
        for key in sorted(self.objects):
            result = self.compiled(key)
            if result.problems:
                plan.skipped[key] = "; ".join(result.problems)
                if key not in self._last_good:
                    continue
                plan.skipped[key] += "; its last good version stays"
                plan.kept.add(key)
                result = self._last_good[key]
            taken = [
                f"{kind} {name} is already made by {describe(claimed[(kind, name)])}"
                for kind, name in ((d["kind"], d["metadata"]["name"]) for d in result.docs)
                if (kind, name) in claimed
            ]
            if taken:
                plan.skipped[key] = "; ".join(taken)
                plan.kept.discard(key)
                continue
            for d in result.docs:
                claimed[(d["kind"], d["metadata"]["name"])] = key
            plan.objects[key] = result.docs
        return plan
