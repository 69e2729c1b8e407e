"""The cluster as the informers last saw it, and which registry services each change touches.

Pure: informers feed it decoded objects (`apply` for watch events, `replace` for a relist);
it answers with the registry service names whose entries may have changed, and `entries(name)`
computes what one registry service should hold. Indexes keep that incremental: a pod event
touches only the Services whose EndpointSlices list that pod.

Names are claimed: each selected Service claims its registry name; when two claim one name,
the first in (namespace, name) order gets it and the other is reported and left out.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from ._entry import Entry, EntryKey
from ._mapping import MappingContext, service_entries
from ._naming import NAME_ANNOTATION, Namer
from ._objects import ENDPOINT_SLICES, PODS, SERVICES, Key, Kind, key_of
from ._problems import Problems
from ._selection import Selection

log = logging.getLogger("weft.k8s.cluster")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


class ClusterState:
    def __init__(
        self,
        selection: Selection,
        namer: Namer,
        *,
        cluster: str,
        trust_domain: str = "",
        problems: Problems | None = None,
    ) -> None:
        self.selection = selection
        self.namer = namer
        self.problems = problems or Problems(log)
        self.ctx = MappingContext(cluster, trust_domain, self.problems)
        self.services: dict[Key, Any] = {}
        self.slices: dict[Key, Any] = {}
        self.pods: dict[Key, Any] = {}
        self._slice_service: dict[Key, Key] = {}  # slice -> its Service
        self._service_slices: dict[Key, set[Key]] = defaultdict(set)
        self._slice_pods: dict[Key, set[Key]] = {}
        self._pod_slices: dict[Key, set[Key]] = defaultdict(set)
        self._names: dict[Key, str] = {}  # selected Service -> the registry name it claims
        self._claims: dict[str, set[Key]] = defaultdict(set)

    # -- events in ---------------------------------------------------------------------------

    def apply(self, kind: Kind[Any], event: str, obj: Any) -> set[str]:
        """One watch event; returns the registry names whose entries may have changed."""
        key = key_of(obj)
        if event == DELETED:
            return self.remove(kind, key)
        if kind is SERVICES:
            return self._service_event(key, obj)
        if kind is ENDPOINT_SLICES:
            return self._slice_event(key, obj)
        if kind is PODS:
            return self._pod_event(key, obj)
        raise ValueError(f"ClusterState does not track {kind.name}")

    def remove(self, kind: Kind[Any], key: Key) -> set[str]:
        """A deletion known only by key (its last state could not be read)."""
        if kind is SERVICES:
            return self._service_event(key, None)
        if kind is ENDPOINT_SLICES:
            return self._slice_event(key, None)
        if kind is PODS:
            return self._pod_event(key, None)
        raise ValueError(f"ClusterState does not track {kind.name}")

    def replace(
        self, kind: Kind[Any], objects: Iterable[Any], keep: Iterable[Key] = ()
    ) -> set[str]:
        """A relist: `objects` is the whole collection now. Objects not listed are deleted,
        except those in `keep` (listed, but unreadable this time: their last good version
        stays, so a malformed object never removes healthy entries)."""
        store = self._store(kind)
        fresh = {key_of(o): o for o in objects}
        keep_set = set(keep)
        dirty: set[str] = set()
        for key in [k for k in store if k not in fresh and k not in keep_set]:
            dirty |= self.apply(kind, DELETED, store[key])
        for key, obj in fresh.items():
            old = store.get(key)
            if old is None or _version(old) is None or _version(old) != _version(obj):
                dirty |= self.apply(kind, MODIFIED if old is not None else ADDED, obj)
        return dirty

    def _store(self, kind: Kind[Any]) -> dict[Key, Any]:
        return {SERVICES: self.services, ENDPOINT_SLICES: self.slices, PODS: self.pods}[kind]

    def _service_event(self, key: Key, svc: Any | None) -> set[str]:
        dirty: set[str] = set()
        old_name = self._names.pop(key, None)
        if old_name is not None:
            self._claims[old_name].discard(key)
            if not self._claims[old_name]:
                del self._claims[old_name]
            dirty.add(old_name)
        if svc is None:
            self.services.pop(key, None)
            return dirty
        self.services[key] = svc
        name = self._claim_name(key, svc)
        if name is not None:
            self._names[key] = name
            self._claims[name].add(key)
            dirty.add(name)
        return dirty

    def registry_name(self, name: str, namespace: str | None) -> str | None:
        """The registry name of Service `namespace/name` as this adapter registers it: the name
        it claims (its annotation or the template), else the template's (a Service not seen
        or not synced here: another cluster may register it under that name)."""
        if namespace is None:
            return None
        claimed = self._names.get((namespace, name))
        if claimed is not None:
            return claimed
        try:
            return self.namer.service_name(namespace, name)
        except ValueError:
            return None

    def _claim_name(self, key: Key, svc: Any) -> str | None:
        decision = self.selection.decide(svc)
        if not decision.sync:
            return None
        override = (svc.metadata.annotations or {}).get(NAME_ANNOTATION)
        try:
            return self.namer.service_name(key[0], key[1], override)
        except ValueError as exc:
            self.problems.report(f"Service {key[0]}/{key[1]}", f"{exc}; not synced")
            return None

    def _slice_event(self, key: Key, slice_: Any | None) -> set[str]:
        dirty: set[str] = set()
        old_service = self._slice_service.pop(key, None)
        if old_service is not None:
            self._service_slices[old_service].discard(key)
            if not self._service_slices[old_service]:
                del self._service_slices[old_service]
            dirty |= self._names_of(old_service)
        for pod in self._slice_pods.pop(key, set()):
            self._pod_slices[pod].discard(key)
            if not self._pod_slices[pod]:
                del self._pod_slices[pod]
        if slice_ is None:
            self.slices.pop(key, None)
            return dirty
        self.slices[key] = slice_
        service = (slice_.metadata.labels or {}).get(SERVICE_NAME_LABEL)
        if service:
            skey = (key[0], service)
            self._slice_service[key] = skey
            self._service_slices[skey].add(key)
            dirty |= self._names_of(skey)
        pods = {
            (ep.targetRef.namespace or key[0], ep.targetRef.name)
            for ep in slice_.endpoints or []
            if ep.targetRef is not None and ep.targetRef.kind == "Pod" and ep.targetRef.name
        }
        if pods:
            self._slice_pods[key] = pods
            for pod in pods:
                self._pod_slices[pod].add(key)
        return dirty

    def _pod_event(self, key: Key, pod: Any | None) -> set[str]:
        if pod is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = pod
        dirty: set[str] = set()
        for slice_key in self._pod_slices.get(key, ()):
            service = self._slice_service.get(slice_key)
            if service is not None:
                dirty |= self._names_of(service)
        return dirty

    def _names_of(self, service: Key) -> set[str]:
        name = self._names.get(service)
        return {name} if name is not None else set()

    # -- what the registry should hold -------------------------------------------------------

    def names(self) -> set[str]:
        return set(self._claims)

    def owner(self, name: str) -> Key | None:
        """The Service that holds registry name `name` (the first claimant)."""
        claimants = self._claims.get(name)
        if not claimants:
            return None
        winner = min(claimants)
        for other in sorted(claimants - {winner}):
            self.problems.report(
                f"Service {other[0]}/{other[1]}",
                f"maps to registry service {name!r}, which Service {winner[0]}/{winner[1]} "
                f"already has; not synced (set the {NAME_ANNOTATION} annotation or change "
                "name_template)",
                level=logging.ERROR,
            )
        return winner

    def entries(self, name: str) -> dict[EntryKey, Entry]:
        owner = self.owner(name)
        if owner is None:
            return {}
        slices = [self.slices[k] for k in sorted(self._service_slices.get(owner, ()))]
        return service_entries(name, self.services[owner], slices, self.pods, self.ctx)

    def counts(self) -> Mapping[str, int]:
        return {
            "services": len(self.services),
            "endpointslices": len(self.slices),
            "pods": len(self.pods),
            "synced_services": len(self._claims),
        }


def _version(obj: Any) -> str | None:
    meta = getattr(obj, "metadata", None)
    return getattr(meta, "resourceVersion", None)
