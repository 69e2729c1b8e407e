"""Istio ServiceEntry (networking.istio.io v1, v1beta1, v1alpha3) to a Weft ExternalService.

What maps (docs/importers.md has the table): hosts (exact DNS names; wildcards are warned and
left out), ports (number and protocol: HTTP -> http; HTTPS and TLS -> tls, because in Istio
the application speaks TLS itself, which Weft tunnels with CONNECT; TCP and the database
protocols -> tcp), resolution (DNS, DNS_ROUND_ROBIN and NONE -> dns: the sidecar connects to
the host's own name; STATIC -> static with the endpoints' IP addresses), location
MESH_EXTERNAL. What Weft does not do is warned per field: virtual IPs (`addresses`), endpoint
ports, labels, weights and localities, `exportTo`, `workloadSelector`, `subjectAltNames`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ._notes import Notes

_HOST = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PROTOCOLS = {"HTTP": "http", "HTTPS": "tls", "TLS": "tls", "TCP": "tcp"}
_OPAQUE = {"MONGO", "MYSQL", "REDIS"}  # spoken over TCP: tunnelled as they are
_RESOLUTIONS = {"DNS": "dns", "DNS_ROUND_ROBIN": "dns", "NONE": "dns", "STATIC": "static"}
_IGNORED = ("addresses", "exportTo", "workloadSelector", "subjectAltNames")


def _hosts(spec: dict[str, Any], notes: Notes) -> list[str]:
    out = []
    for i, host in enumerate(spec.get("hosts") or []):
        name = str(host).strip().lower().rstrip(".")
        if name.startswith("*"):
            notes.ignored(f"spec.hosts[{i}]", f"{host!r}: wildcard hosts are not supported")
        elif not _HOST.match(name):
            notes.ignored(f"spec.hosts[{i}]", f"{host!r} is not a DNS name with a dot")
        elif name not in out:
            out.append(name)
    return out


def _ports(spec: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, port in enumerate(spec.get("ports") or []):
        where = f"spec.ports[{i}]"
        notes.unknown(port, where, {"number", "name", "protocol", "targetPort"})
        if "targetPort" in port:
            notes.ignored(f"{where}.targetPort", "is not supported: the port number is used")
        protocol = str(port.get("protocol", "TCP")).upper()
        weft = _PROTOCOLS.get(protocol)
        if weft is None and protocol in _OPAQUE:
            weft = "tcp"
        if weft is None:
            notes.ignored(f"{where}.protocol", f"{protocol!r} is not supported: port left out")
            continue
        if protocol == "HTTPS":
            notes.note(
                f"{where}.protocol",
                "HTTPS: the application speaks TLS itself, so Weft tunnels it (tls, CONNECT); "
                "declare protocol https instead to have the sidecar originate TLS",
            )
        out.append({"port": port.get("number"), "protocol": weft})
    return out


def _addresses(spec: dict[str, Any], notes: Notes) -> list[str]:
    out = []
    for i, endpoint in enumerate(spec.get("endpoints") or []):
        where = f"spec.endpoints[{i}]"
        notes.unknown(endpoint, where, {"address"})
        address = str(endpoint.get("address", ""))
        try:
            out.append(str(ipaddress.ip_address(address)))
        except ValueError:
            notes.problem(f"{where}.address", f"{address!r} is not an IP address")
    return out


def convert_service_entry(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    notes.unknown(
        spec, "spec", {"hosts", "ports", "location", "resolution", "endpoints", *_IGNORED}
    )
    for field in _IGNORED:
        if field == "addresses" and field in spec:
            notes.ignored(
                "spec.addresses",
                "(virtual IPs) are not used: applications name the host through the forward proxy",
            )
        elif field in spec:
            notes.ignored(f"spec.{field}")
    name = str((doc.get("metadata") or {}).get("name", ""))
    if not _NAME.match(name):
        notes.problem("metadata.name", f"{name!r} is not a Weft service name (a-z, 0-9, '-')")
        return []
    location = spec.get("location", "MESH_EXTERNAL")
    if location != "MESH_EXTERNAL":
        notes.ignored(
            "spec.location", f"{location!r}: imported as outside the mesh (no sidecar, no mTLS)"
        )
    hosts = _hosts(spec, notes)
    if not hosts:
        notes.problem("spec.hosts", "no host Weft can declare (exact DNS names)")
        return []
    ports = _ports(spec, notes)
    if not ports:
        notes.problem("spec.ports", "no port Weft can declare")
        return []
    resolution = str(spec.get("resolution", "NONE"))
    weft_resolution = _RESOLUTIONS.get(resolution)
    if weft_resolution is None:
        notes.problem("spec.resolution", f"{resolution!r} is not DNS, STATIC or NONE")
        return []
    out: dict[str, Any] = {"hosts": hosts, "ports": ports, "resolution": weft_resolution}
    if resolution == "NONE":
        notes.note(
            "spec.resolution",
            "NONE: Weft has no original destination address, so it connects to the host's name",
        )
    if weft_resolution == "static":
        addresses = _addresses(spec, notes)
        if not addresses:
            notes.problem("spec.endpoints", "resolution STATIC needs endpoints with addresses")
            return []
        out["addresses"] = addresses
    elif spec.get("endpoints"):
        notes.ignored("spec.endpoints", "are not used with DNS resolution: the host is resolved")
    return [
        {
            "apiVersion": "weft.dev/v1",
            "kind": "ExternalService",
            "metadata": {"name": name},
            "spec": out,
        }
    ]
