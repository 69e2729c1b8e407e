"""One registry instance as the adapter wants it, or as the registry has it (pure).

Both sides of the diff are Entries: `registration()` is what the batch API takes, and
`from_view()` reads the registry's instance view back into the same shape, so comparing the
two says exactly which instances need a write. Only fields the adapter sets are compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EntryKey = tuple[str, str, str]  # (service, node, id), as the registry keys an instance

CHECK_NAME = "Kubernetes readiness"
CHECK_NOTES = "the endpoint's ready condition in its EndpointSlice, set by weft k8s-adapter"
# Adapter-run checks never expire (the server leaves them to the adapter); a TTL check is the
# registry's kind for "status pushed from outside", and the TTL is only a formality.
CHECK_TTL = "1h"

PASSING = "passing"
CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Entry:
    service: str
    id: str
    node: str
    namespace: str
    address: str
    node_address: str
    port: int
    protocol: str = "http"
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    sidecar_port: int = 0
    identity: str = ""
    status: str = PASSING

    @property
    def key(self) -> EntryKey:
        return (self.service, self.node, self.id)

    def registration(self, source: str) -> dict[str, Any]:
        """The native API's instance body (`POST /v1/registry/batch` upserts)."""
        body: dict[str, Any] = {
            "service": self.service,
            "id": self.id,
            "node": self.node,
            "namespace": self.namespace,
            "address": self.address,
            "node_address": self.node_address,
            "port": self.port,
            "protocol": self.protocol,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "source": source,
            "checks": [
                {"name": CHECK_NAME, "ttl": CHECK_TTL, "status": self.status, "notes": CHECK_NOTES}
            ],
        }
        if self.sidecar_port:
            body["sidecar_port"] = self.sidecar_port
            body["identity"] = self.identity
        return body

    @classmethod
    def from_view(cls, view: Mapping[str, Any]) -> Entry:
        """An instance view of the registry (`GET /v1/registry/instances`) as an Entry.

        The status is the adapter's own check's; an instance without exactly that check gets
        an empty status, which differs from any wanted one, so it is rewritten.
        """
        checks = view.get("checks") or []
        status = ""
        if len(checks) == 1 and checks[0].get("name") == CHECK_NAME:
            status = str(checks[0].get("status", ""))
        return cls(
            service=str(view["service"]),
            id=str(view["id"]),
            node=str(view["node"]),
            namespace=str(view.get("namespace") or "default"),
            address=str(view.get("address") or ""),
            node_address=str(view.get("node_address") or ""),
            port=int(view.get("port") or 0),
            protocol=str(view.get("protocol") or "http"),
            tags=tuple(view.get("tags") or ()),
            meta=tuple(sorted((view.get("meta") or {}).items())),
            sidecar_port=int(view.get("sidecar_port") or 0),
            identity=str(view.get("identity") or ""),
            status=status,
        )
