"""The Kubernetes kinds the adapter reads and writes, their REST paths, and strict decoding.

Objects are decoded into lightkube-models types: a field of the wrong type
or a missing required field raises BadObject naming the path (`$.endpoints[0].addresses`),
so one malformed object from the API server is skipped instead of poisoning the sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from ._errors import BadObject

T = TypeVar("T")

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Kind(Generic[T]):
    name: str
    plural: str
    group: str  # "" for the core API
    version: str
    model: type[T]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection(self, namespace: str | None = None) -> str:
        if namespace is None:
            return f"{self.prefix}/{self.plural}"
        return f"{self.prefix}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


SERVICES: Kind[Service] = Kind("Service", "services", "", "v1", Service)
ENDPOINT_SLICES: Kind[EndpointSlice] = Kind(
    "EndpointSlice", "endpointslices", "discovery.k8s.io", "v1", EndpointSlice
)
PODS: Kind[Pod] = Kind("Pod", "pods", "", "v1", Pod)
LEASES: Kind[Lease] = Kind("Lease", "leases", "coordination.k8s.io", "v1", Lease)


def describe(raw: Any) -> str:
    """`namespace/name` of a raw object, as far as it can be read (for log lines)."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        return "<no metadata>"
    return f"{meta.get('namespace') or ''}/{meta.get('name') or '<no name>'}".lstrip("/")


def raw_key(raw: Any) -> Key | None:
    """The (namespace, name) of a raw object if it has them, whatever else is wrong with it."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        ns = meta.get("namespace")
        return (ns if isinstance(ns, str) else "", meta["name"])
    return None


def raw_resource_version(raw: Any) -> str | None:
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
        return meta["resourceVersion"] or None
    return None


def decode(kind: Kind[T], raw: Any) -> T:
    """`raw` as a `kind` model; raises BadObject naming what is wrong."""
    if not isinstance(raw, dict):
        raise BadObject(f"a {kind.name} must be a JSON object, got {type(raw).__name__}")
    got = raw.get("kind")
    if got is not None and got != kind.name:
        raise BadObject(f"expected a {kind.name}, got kind {got!r} ({describe(raw)})")
    try:
        obj: Any = kind.model.from_dict(raw)  # type: ignore[attr-defined]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # msgspec's are ValueErrors
        raise BadObject(f"{kind.name} {describe(raw)}: {exc}") from None
    meta = obj.metadata
    if meta is None or not meta.name:
        raise BadObject(f"{kind.name} {describe(raw)}: metadata.name is missing")
    if not meta.namespace:
        raise BadObject(f"{kind.name} {describe(raw)}: metadata.namespace is missing")
    return obj  # type: ignore[no-any-return]


def key_of(obj: Any) -> Key:
    return (obj.metadata.namespace, obj.metadata.name)


def encode(obj: Any) -> dict[str, Any]:
    """A model as the JSON object the API server takes (unset fields left out)."""
    return obj.to_dict()  # type: ignore[no-any-return]
