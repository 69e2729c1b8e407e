"""Proxy snapshots built from a service definition and the registry's view (pure).

The document follows the proxy's contract (`proxy/snapshot.schema.json`, docs/snapshot.md):
identity and certificate files, the inbound mTLS listener in front of the local app, the
upstreams with the sidecars of their passing instances as endpoints, the service's own
authorization rules and (v3) the mesh's intentions for it (`_intentions`). Instances without
a sidecar cannot be reached over mTLS and are left out (and said so).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ca import SpiffeId

from ._certs import CertFiles
from ._definitions import ServiceDef
from ._egress import external_entries, outbound_mode
from ._traffic import Resources, endpoint_fields, upstream_fields

log = logging.getLogger("weft.agent.snapshots")

SCHEMA = "weft.proxy.snapshot/v1"
SCHEMA_V2 = "weft.proxy.snapshot/v2"
SCHEMA_V3 = "weft.proxy.snapshot/v3"  # v2 plus the mesh's intentions
SCHEMA_V4 = "weft.proxy.snapshot/v4"  # v3 plus external services and the outbound mode


def endpoints(
    instances: Sequence[Mapping[str, Any]],
    resources: Resources | None = None,
    service: str = "",
) -> list[dict[str, Any]]:
    out = []
    for inst in instances:
        if inst.get("status") != "passing":
            continue
        if not inst.get("sidecar_port") or not inst.get("identity"):
            continue
        out.append(
            {
                "address": inst["address"] or inst["node_address"],
                "port": inst["sidecar_port"],
                "weight": max(1, int(inst.get("weights", {}).get("passing", 1))),
                "identity": inst["identity"],
            }
        )
        if resources is not None:
            subsets = resources.subsets_of(service, inst)
            if subsets:
                out[-1]["subsets"] = subsets
    out.sort(key=lambda e: (e["address"], e["port"]))
    return out


def wanted_services(d: ServiceDef, resources: Resources | None) -> set[str]:
    """The services a sidecar needs instances of: its upstreams and what their routes name."""
    services = {u.service for u in d.upstreams}
    if resources is not None:
        for service in list(services):
            services |= resources.referenced(service)
        services -= set(resources.externals)  # outside the mesh: no instances to watch
    return services


def build(
    d: ServiceDef,
    identity: SpiffeId,
    files: CertFiles,
    upstream_instances: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    version: int,
    resources: Resources | None = None,
    intentions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    if d.deny:
        rules.append({"name": "deny", "action": "deny", "sources": list(d.deny)})
    if d.allow:
        rules.append({"name": "allow", "action": "allow", "sources": list(d.allow)})
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "version": version,
        "identity": identity.uri,
        "tls": {"cert": str(files.cert), "key": str(files.key), "bundle": str(files.bundle)},
        "inbound": {
            "address": "0.0.0.0",
            "port": d.sidecar_port,
            "protocol": d.protocol,
            "app": {"address": "127.0.0.1", "port": d.port},
        },
        "authorization": {"default": d.default_policy, "rules": rules},
        "upstreams": [
            {
                "name": up.service,
                "address": "127.0.0.1",
                "port": up.local_port,
                "protocol": _protocol_of(upstream_instances.get(up.service, ())),
                "endpoints": endpoints(
                    upstream_instances.get(up.service, ()), resources, up.service
                ),
            }
            for up in d.upstreams
        ],
    }
    if resources is not None:
        doc["schema"] = SCHEMA_V2
        listed = {up.service for up in d.upstreams}
        for service in sorted(wanted_services(d, resources) - listed):
            # a backend or mirror of a route: no local port of its own
            doc["upstreams"].append(
                {
                    "name": service,
                    "protocol": _http_protocol_of(upstream_instances.get(service, ())),
                    "endpoints": endpoints(upstream_instances.get(service, ()), resources, service),
                }
            )
        for upstream in doc["upstreams"]:
            if upstream["protocol"] in _HTTP:
                upstream.update(upstream_fields(upstream["name"], resources))
            else:
                upstream.update(endpoint_fields(upstream["name"], resources))
    if intentions is not None:
        doc["schema"] = SCHEMA_V3
        doc["intentions"] = dict(intentions)
    if resources is not None:
        external = external_entries(resources, {u["name"] for u in doc["upstreams"]})
        mode = outbound_mode(d.name, resources)
        if external or mode != "allow-any":
            doc["schema"] = SCHEMA_V4
            doc["external"] = external
            doc["outbound"] = mode
    if d.forward_proxy_port:
        doc["forward_proxy"] = {"address": "127.0.0.1", "port": d.forward_proxy_port}
    return doc


_PROTOCOLS = ("http", "http2", "grpc", "tcp")
_HTTP = ("http", "http2", "grpc")  # routed, balanced per request


def _protocol_of(instances: Sequence[Mapping[str, Any]]) -> str:
    """What the service's instances declare (`protocol` in their definitions): the first one
    that says decides; a caller's sidecar speaks HTTP/2 to an `http2`/`grpc` service."""
    for inst in instances:
        if inst.get("protocol") in _PROTOCOLS:
            return str(inst["protocol"])
    return "http"


def _http_protocol_of(instances: Sequence[Mapping[str, Any]]) -> str:
    """A route's backend is HTTP of some kind, never opaque."""
    protocol = _protocol_of(instances)
    return protocol if protocol in _HTTP else "http"


def content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document without its version: equal contents need no new version."""
    return {k: v for k, v in doc.items() if k != "version"}
