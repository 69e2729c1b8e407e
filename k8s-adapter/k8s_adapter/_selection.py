"""Which Kubernetes Services the adapter syncs into the registry (pure).

namespace in exclude_namespaces                  never
namespaces given and namespace not among them    never
labelled app.kubernetes.io/managed-by=weft-k8s-adapter  never (published by --to-k8s:
                                                  syncing them back would loop)
type ExternalName                                never (it has no endpoints)
annotation weft.io/sync: "true" / "false"        as it says
no annotation                                    default_sync
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SYNC_ANNOTATION = "weft.io/sync"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "weft-k8s-adapter"

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


@dataclass(frozen=True)
class Decision:
    sync: bool
    reason: str


@dataclass(frozen=True)
class Selection:
    namespaces: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    default_sync: bool = True

    @classmethod
    def of(cls, namespaces: Iterable[str], exclude: Iterable[str], default_sync: bool) -> Selection:
        return cls(frozenset(namespaces), frozenset(exclude), default_sync)

    def namespace_allowed(self, namespace: str) -> bool:
        if namespace in self.exclude:
            return False
        return not self.namespaces or namespace in self.namespaces

    def decide(self, service: Any) -> Decision:
        """Whether to sync `service` (a lightkube Service model), and why."""
        meta = service.metadata
        if not self.namespace_allowed(meta.namespace):
            return Decision(False, f"namespace {meta.namespace} is not synced")
        if (meta.labels or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
            return Decision(False, "published by weft --to-k8s")
        spec = service.spec
        if spec is not None and spec.type == "ExternalName":
            return Decision(False, "an ExternalName service has no endpoints")
        value = (meta.annotations or {}).get(SYNC_ANNOTATION)
        if value is None:
            return Decision(
                self.default_sync,
                "synced by default" if self.default_sync else f"no {SYNC_ANNOTATION} annotation",
            )
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return Decision(True, f"{SYNC_ANNOTATION}={value}")
        if lowered in _FALSE:
            return Decision(False, f"{SYNC_ANNOTATION}={value}")
        return Decision(
            self.default_sync,
            f"{SYNC_ANNOTATION}={value!r} is neither true nor false; using the default",
        )
