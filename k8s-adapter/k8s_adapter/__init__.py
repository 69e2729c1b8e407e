"""Weft's Kubernetes adapter: Pods and Services into the registry, VM services back out.

A Deployment in each cluster (or `weft k8s-adapter` outside one) lists and watches Services,
EndpointSlices and Pods, and keeps the registry's entries of source `k8s/<cluster>` equal to
them with diffed, batched writes; with `--to-k8s` it publishes registry services as
selector-less Services and EndpointSlices. It also watches the other meshes' traffic CRDs
(VirtualService, DestinationRule, ServiceEntry, ServiceProfile, HTTPRoute and Linkerd's
HTTPRoute, TrafficSplit, HTTPRouteGroup) where the cluster serves them and keeps the Weft
resources they compile into in the registry, under its source.
Replicas elect one writer with a Lease.

Pure cores (no sockets, no clock): `_selection`, `_naming`, `_mapping`, `_entry`, `_diff`,
`_cluster`, `_lease_state`, `_export`, `_traffic_objects`, `_traffic_compile`. Thin trio I/O
around them: `_kube`, `_credentials`, `_informer`, `_registry_sync`, `_traffic_sync`,
`_election`, `_to_k8s`, `_status_http`, and `_adapter`, which assembles them. Uses
`registry.client`, `registry.lifecycle` (backoff, signals, ready file), the pure
`registry.importers` and `registry.resources` (the very code `weft apply` compiles and checks
with) and `ca`, nothing else of Weft.
"""

from typing import Any

from ._errors import AdapterError as AdapterError
from ._errors import ConfigError as ConfigError
from ._settings import AdapterSettings as AdapterSettings

# The daemon pulls in httpx, trio and lightkube; `weft --help` only needs the settings.
_LAZY = {"Adapter", "run", "purge_cluster"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _adapter

        return getattr(_adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Adapter", "AdapterError", "AdapterSettings", "ConfigError", "purge_cluster", "run"]
