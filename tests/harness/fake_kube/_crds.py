"""The other meshes' traffic CRDs, as a cluster serves them once their definitions are applied.

A test installs the ones it wants (`FakeKube.install_crds`); until then their group-version
answers 404 on discovery and on every path, as on a cluster without Istio or Linkerd.
"""

from __future__ import annotations

from ._store import Resource

# Keyed by plural, as the store is: Linkerd's own HTTPRoute (policy.linkerd.io) shares the
# plural `httproutes` with the Gateway API's and is not served here (the adapter's handling of
# it is covered by the pure tests of k8s_adapter._traffic_objects).
TRAFFIC_CRDS = {
    "virtualservices": Resource("virtualservices", "VirtualService", "networking.istio.io", "v1"),
    "destinationrules": Resource(
        "destinationrules", "DestinationRule", "networking.istio.io", "v1"
    ),
    "serviceprofiles": Resource("serviceprofiles", "ServiceProfile", "linkerd.io", "v1alpha2"),
    "httproutes": Resource("httproutes", "HTTPRoute", "gateway.networking.k8s.io", "v1"),
    "trafficsplits": Resource("trafficsplits", "TrafficSplit", "split.smi-spec.io", "v1alpha4"),
    "httproutegroups": Resource(
        "httproutegroups", "HTTPRouteGroup", "specs.smi-spec.io", "v1alpha4"
    ),
}


def crd(plural: str, version: str | None = None) -> Resource:
    """The CRD `plural` (e.g. "virtualservices"), served at `version` if given."""
    base = TRAFFIC_CRDS[plural]
    if version is None:
        return base
    return Resource(base.plural, base.kind, base.group, version)
