"""An ingress gateway's snapshot: what `weft gateway` on this host routes, and to whom. Pure.

The gateway is a service of kind `ingress-gateway` defined on this host. Its Gateways are the
`Gateway` resources whose `spec.service` (default: the Gateway's name) is that service; their
Routes are those with `spec.gateway` naming one of them. Each such Route becomes a virtual
host (docs/gateway.md): its hosts (those the Gateway serves), its rules compiled exactly as a
sidecar's (`_traffic.compile_rule`, filled in from the first backend's ServiceDefaults), and
the retry budget of that backend's ServiceDefaults. Every backend and mirror service is an
upstream without a local port, with the sidecars of its passing instances as endpoints, so
the gateway calls them over mTLS as its own identity and the intentions of each destination
decide; their balancer, failure accrual and pool are their ServiceDefaults', as for a
sidecar. The document is a proxy snapshot (v2) plus the `gateway` section only a gateway
reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ca import SpiffeId
from registry.resources import covered

from ._certs import CertFiles
from ._definitions import ServiceDef
from ._snapshots import SCHEMA_V2, endpoints
from ._traffic import Resources, budget_fields, compile_rule, endpoint_fields


def bound_routes(
    d: ServiceDef, resources: Resources | None
) -> list[tuple[str, list[str], Mapping[str, Any]]]:
    """(route name, hosts served, spec) of every Route bound to this gateway, by name."""
    if resources is None:
        return []
    out = []
    for name, doc in sorted(resources.gateways.items()):
        spec = doc.get("spec") or {}
        if (spec.get("service") or name) != d.name:
            continue
        served = list(spec.get("hosts", ()))
        for route_name, route in sorted(resources.gateway_routes.get(name, ())):
            hosts = [h for h in route.get("hosts", ()) if covered(h, served)]
            if hosts:
                out.append((route_name, hosts, route))
    return out


def services(d: ServiceDef, resources: Resources | None) -> set[str]:
    """The services the gateway's routes send to (backends and mirrors)."""
    out: set[str] = set()
    for _, _, route in bound_routes(d, resources):
        for rule in route.get("rules", ()):
            out.update(b["service"] for b in rule.get("backends", ()))
            if rule.get("mirror"):
                out.add(rule["mirror"]["service"])
    return out


def build(
    d: ServiceDef,
    identity: SpiffeId,
    files: CertFiles,
    instances: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    version: int,
    resources: Resources | None,
) -> dict[str, Any]:
    vhosts = []
    claimed: set[str] = set()
    for name, hosts, route in bound_routes(d, resources):
        assert resources is not None
        # Two Gateways of one service may both bind a host: the first Route (by name) keeps it.
        hosts = [h for h in hosts if h not in claimed]
        if not hosts:
            continue
        claimed.update(hosts)
        first = route["rules"][0]["backends"][0]["service"]
        defaults = resources.defaults.get(first, {})
        vhost: dict[str, Any] = {
            "name": name,
            "hosts": hosts,
            "routes": [compile_rule(rule, defaults) for rule in route["rules"]],
            "retry_budget": budget_fields(defaults),
        }
        if route.get("precedence", "order") != "order":
            vhost["precedence"] = route["precedence"]
        vhosts.append(vhost)
    return {
        "schema": SCHEMA_V2,
        "version": version,
        "identity": identity.uri,
        "tls": {"cert": str(files.cert), "key": str(files.key), "bundle": str(files.bundle)},
        "upstreams": [
            {
                "name": service,
                "protocol": "http",
                "endpoints": endpoints(instances.get(service, ()), resources, service),
                # the balancer, failure accrual and pool its ServiceDefaults choose, as a
                # sidecar's (a DestinationRule's outlierDetection ejects here too)
                **(endpoint_fields(service, resources) if resources is not None else {}),
            }
            for service in sorted(services(d, resources))
        ],
        "gateway": {"virtual_hosts": vhosts},
    }
