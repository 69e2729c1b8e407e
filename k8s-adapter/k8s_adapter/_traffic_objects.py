"""The other meshes' traffic CRDs the adapter watches, and what they compile into. Pure.

    VirtualService, DestinationRule   networking.istio.io   v1, v1beta1, v1alpha3
    ServiceEntry (ExternalService)    networking.istio.io   v1, v1beta1, v1alpha3
    ServiceProfile                    linkerd.io            v1alpha2
    HTTPRoute                         gateway.networking.k8s.io  v1, v1beta1
    HTTPRoute (Linkerd's own)         policy.linkerd.io     v1beta3, v1beta2, v1beta1
    TrafficSplit                      split.smi-spec.io     v1alpha4 ... v1alpha1
    HTTPRouteGroup                    specs.smi-spec.io     v1alpha4 ... v1alpha1

Each kind is watched at the first of its versions the cluster serves (the API server converts
between served versions, so one is enough). Gateways (Istio's, the Gateway API's) are not
watched: the cluster's Gateways belong to its own ingress.

Objects are converted in groups, one group per set of target services: every object that
makes a resource for a service (each object converted alone tells which), and the
HTTPRouteGroups a TrafficSplit names, are converted together with `registry.importers`, the
very code `weft apply -f` uses, then pass `registry.resources`' checks. So HTTPRoutes of one
Service merge into one Route, a TrafficSplit's `matches` find their groups, and a change to any
member recomputes the group. A group that fails is skipped whole (every member named, with the
reason) and never changes the registry: a group that was good and turns bad keeps its last
good resources (as the informer keeps the last good version of an object that comes back
undecodable); only deletion removes them. Names resolve with the adapter's naming (the
`--name-template` and `weft.io/service-name` it registers Services under); a ServiceEntry
names no Service of the cluster, so its ExternalService keeps the ServiceEntry's own name.
Two objects of a group that make the same Weft resource: the first in (kind, namespace,
name) order keeps it and the other is skipped for it, as the Service name mapping does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from registry import importers

from ._objects import Key, Kind
from ._traffic_compile import ORIGIN_LABEL as ORIGIN_LABEL
from ._traffic_compile import (
    Compiled,
    GroupKey,
    Namer,
    ObjectKey,
    ResourceKey,
    convert,
    describe_group,
    resource_key,
    service_of_doc,
)


@dataclass(frozen=True)
class CrdKind:
    name: str
    plural: str
    group: str
    versions: tuple[str, ...]  # the importer's, most preferred first
    qualified: bool = False  # another watched kind has the same name

    @property
    def key(self) -> str:
        """Unique among the watched kinds: `HTTPRoute.policy.linkerd.io` beside `HTTPRoute`."""
        return f"{self.name}.{self.group}" if self.qualified else self.name


TRAFFIC_KINDS = (
    CrdKind(
        "VirtualService", "virtualservices", "networking.istio.io", ("v1", "v1beta1", "v1alpha3")
    ),
    CrdKind(
        "DestinationRule", "destinationrules", "networking.istio.io", ("v1", "v1beta1", "v1alpha3")
    ),
    CrdKind("ServiceEntry", "serviceentries", "networking.istio.io", ("v1", "v1beta1", "v1alpha3")),
    CrdKind("ServiceProfile", "serviceprofiles", "linkerd.io", ("v1alpha2",)),
    CrdKind("HTTPRoute", "httproutes", "gateway.networking.k8s.io", ("v1", "v1beta1")),
    CrdKind(
        "HTTPRoute",
        "httproutes",
        "policy.linkerd.io",
        ("v1beta3", "v1beta2", "v1beta1"),
        qualified=True,
    ),
    CrdKind(
        "TrafficSplit",
        "trafficsplits",
        "split.smi-spec.io",
        ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"),
    ),
    CrdKind(
        "HTTPRouteGroup",
        "httproutegroups",
        "specs.smi-spec.io",
        ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"),
    ),
)
_KEYS = {(c.group, c.name): c.key for c in TRAFFIC_KINDS}


def kind_key(kind: Kind[Any]) -> str:
    return _KEYS.get((kind.group, kind.name), kind.name)


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


@dataclass
class Plan:
    """What the cluster's objects want in the registry: per group, its documents."""

    groups: dict[GroupKey, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[GroupKey, str] = field(default_factory=dict)  # why, for the log
    # Failed in its newest versions, kept as it last was good (also in `groups`).
    kept: set[GroupKey] = field(default_factory=set)
    compiled: dict[GroupKey, Compiled] = field(default_factory=dict)  # for the messages

    def resources(self) -> dict[ResourceKey, dict[str, Any]]:
        return {resource_key(d): d for docs in self.groups.values() for d in docs}


class _Components:
    """Union-find over object keys: the groups."""

    def __init__(self) -> None:
        self.parent: dict[ObjectKey, ObjectKey] = {}

    def find(self, key: ObjectKey) -> ObjectKey:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: ObjectKey, b: ObjectKey) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[GroupKey]:
        out: dict[ObjectKey, list[ObjectKey]] = {}
        for key in self.parent:
            out.setdefault(self.find(key), []).append(key)
        return sorted(tuple(sorted(m)) for m in out.values())


class TrafficObjects:
    """The watched objects (an informer Sink), compiled on demand in groups, cached."""

    def __init__(
        self,
        on_change: Callable[[], None] = lambda: None,
        naming: importers.Naming | None = None,
    ) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.on_change = on_change
        self.naming = naming
        self._alone: dict[ObjectKey, Compiled] = {}
        self._groups: dict[GroupKey, Compiled] = {}
        self._last_good: dict[ObjectKey, tuple[GroupKey, list[dict[str, Any]]]] = {}

    # -- informer Sink -------------------------------------------------------------------------

    def apply(self, kind: Kind[Any], event: str, obj: Any) -> None:
        key = (kind_key(kind), obj.metadata.namespace, obj.metadata.name)
        if event == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj.raw
        self.on_change()

    def remove(self, kind: Kind[Any], key: Key) -> None:
        self.objects.pop((kind_key(kind), *key), None)
        self.on_change()

    def replace(self, kind: Kind[Any], objects: list[Any], keep: list[Key]) -> None:
        name = kind_key(kind)
        kept = {(name, *k) for k in keep}
        for key in [k for k in self.objects if k[0] == name and k not in kept]:
            del self.objects[key]
        for obj in objects:
            self.objects[(name, obj.metadata.namespace, obj.metadata.name)] = obj.raw
        self.on_change()

    # -- what they make ------------------------------------------------------------------------

    def _route_groups(self, key: ObjectKey) -> list[ObjectKey]:
        """The HTTPRouteGroups (of its namespace) a TrafficSplit's `matches` name."""
        if key[0] != "TrafficSplit":
            return []
        matches = (self.objects[key].get("spec") or {}).get("matches") or []
        named = [m.get("name") for m in matches if isinstance(m, dict)]
        found = [("HTTPRouteGroup", key[1], str(n)) for n in named]
        return sorted({k for k in found if k in self.objects})

    def _compile(
        self,
        cache: dict[Any, Compiled],
        old: dict[Any, Compiled],
        ckey: Any,
        members: list[ObjectKey],
        made_by: dict[ObjectKey, set[ResourceKey]] | None = None,
    ) -> Compiled:
        pairs = [(k, self.objects[k]) for k in members]
        hit = old.get(ckey)
        signature = tuple(
            (k, str((raw.get("metadata") or {}).get("resourceVersion") or "")) for k, raw in pairs
        )
        if (
            hit is None
            or hit.signature != signature
            or not all(v for _, v in signature)
            or not Namer(self.naming).still_valid(hit.lookups)
        ):
            hit = convert(pairs, self.naming, made_by)
        cache[ckey] = hit
        return hit

    def _kept(self, group: GroupKey) -> list[dict[str, Any]] | None:
        """The last good resources of the groups `group`'s members were last good in, when
        all of those groups' members still exist (a deleted object takes its share along)."""
        docs: dict[ResourceKey, dict[str, Any]] = {}
        for key in group:
            if key not in self._last_good:
                continue
            was, made = self._last_good[key]
            if all(k in self.objects for k in was):
                docs.update((resource_key(d), d) for d in made)
        return list(docs.values()) or None

    def plan(self) -> Plan:
        for gone in set(self._last_good) - set(self.objects):
            del self._last_good[gone]
        alone: dict[ObjectKey, Compiled] = {}
        parts = _Components()
        by_service: dict[str, ObjectKey] = {}
        for key in sorted(self.objects):
            if key[0] == "HTTPRouteGroup":
                continue  # part of the group of a TrafficSplit that names it, or of none
            refs = self._route_groups(key)
            result = self._compile(alone, self._alone, key, [key, *refs])
            made = result.docs
            if result.problems and key in self._last_good:
                made = self._last_good[key][1]  # stays with the group it was good in
            parts.find(key)
            for ref in refs:
                parts.union(key, ref)
            for service in sorted({service_of_doc(d) for d in made}):
                parts.union(key, by_service.setdefault(service, key))
        self._alone = alone
        made_by = {k: {resource_key(d) for d in c.docs} for k, c in alone.items()}
        compiled: dict[GroupKey, Compiled] = {}
        plan = Plan()
        claimed: dict[ResourceKey, GroupKey] = {}
        for group in parts.groups():
            result = self._compile(compiled, self._groups, group, list(group), made_by)
            plan.compiled[group] = result
            docs = result.docs
            if result.problems:
                plan.skipped[group] = "; ".join(result.problems)
                kept = self._kept(group)
                if kept is None:
                    continue
                plan.skipped[group] += "; its last good resources stay"
                plan.kept.add(group)
                docs = kept
            else:
                for key in group:
                    self._last_good[key] = (group, docs)
                for key, why in result.dropped.items():
                    plan.skipped[(key,)] = why
            taken = [
                f"{k[0]} {k[1]} is already made by {describe_group(claimed[k])}"
                for k in map(resource_key, docs)
                if k in claimed
            ]
            if taken:
                plan.skipped[group] = "; ".join(taken)
                plan.kept.discard(group)
                continue
            for d in docs:
                claimed[resource_key(d)] = group
            plan.groups[group] = docs
        self._groups = compiled
        return plan
