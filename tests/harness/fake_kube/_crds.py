"""The other meshes' traffic CRDs, as a cluster serves them once their definitions are applied.

A test installs the ones it wants (`FakeKube.install_crds`); until then their group-version
answers 404 on discovery and on every path, as on a cluster without Istio or Linkerd.
"""

from __future__ import annotations

from ._store import Resource, resolve

# Keyed by Resource.qualified, as the store is: Linkerd's own HTTPRoute shares the plural
# `httproutes` with the Gateway API's, and a cluster may serve both.
TRAFFIC_CRDS = {
    r.qualified: r
    for r in (
        Resource("virtualservices", "VirtualService", "networking.istio.io", "v1"),
        Resource("destinationrules", "DestinationRule", "networking.istio.io", "v1"),
        Resource("serviceentries", "ServiceEntry", "networking.istio.io", "v1"),
        Resource("serviceprofiles", "ServiceProfile", "linkerd.io", "v1alpha2"),
        Resource("httproutes", "HTTPRoute", "gateway.networking.k8s.io", "v1"),
        Resource("httproutes", "HTTPRoute", "policy.linkerd.io", "v1beta3"),
        Resource("trafficsplits", "TrafficSplit", "split.smi-spec.io", "v1alpha4"),
        Resource("httproutegroups", "HTTPRouteGroup", "specs.smi-spec.io", "v1alpha4"),
    )
}


def crd(name: str, version: str | None = None) -> Resource:
    """The CRD `name` names (`virtualservices`; `httproutes.policy.linkerd.io`, as its plural
    is not one CRD's alone), served at `version` if given."""
    base = resolve(TRAFFIC_CRDS, name)
    if version is None:
        return base
    return Resource(base.plural, base.kind, base.group, version)
