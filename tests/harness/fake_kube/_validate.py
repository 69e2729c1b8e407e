"""The API server's validation of what clients write (the parts the adapter exercises).

Messages follow the API server's `field: Invalid value: ...` style, so a client that sends a
malformed Service or EndpointSlice gets the 422 Invalid a real cluster would answer.
"""

from __future__ import annotations

import re
from typing import Any

Obj = dict[str, Any]

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def validate(resource: str, obj: Obj) -> str | None:
    """What is wrong with `obj` as a `resource` (its qualified name, `leases.coordination.k8s.io`),
    or None."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63:
            return f"metadata.labels: Invalid value: {value!r}: must be no more than 63 characters"
        if not key:
            return 'metadata.labels: Invalid value: "": name part must be non-empty'
    check = {
        "services": _service,
        "endpointslices.discovery.k8s.io": _endpoint_slice,
        "leases.coordination.k8s.io": _lease,
        "namespaces": _namespace,
        "pods": _pod,
    }.get(resource)
    return check(name, obj) if check else None


def _service(name: str, obj: Obj) -> str | None:
    if not _DNS1035.match(name):
        return (
            f"metadata.name: Invalid value: {name!r}: a DNS-1035 label must consist of lower "
            "case alphanumeric characters or '-', start with an alphabetic character, and end "
            "with an alphanumeric character"
        )
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
        return "spec.ports: Required value"
    names = set()
    for i, port in enumerate(ports):
        if not isinstance(port.get("port"), int) or not 1 <= port["port"] <= 65535:
            return f"spec.ports[{i}].port: Invalid value: {port.get('port')!r}: must be 1-65535"
        if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            return f"spec.ports[{i}].protocol: Unsupported value: {port.get('protocol')!r}"
        if len(ports) > 1 and not port.get("name"):
            return f"spec.ports[{i}].name: Required value"
        if port.get("name") in names:
            return f"spec.ports[{i}].name: Duplicate value: {port.get('name')!r}"
        names.add(port.get("name"))
    return None


def _endpoint_slice(name: str, obj: Obj) -> str | None:
    if not _DNS1123_SUBDOMAIN.match(name):
        return f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain"
    if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
        return f"addressType: Unsupported value: {obj.get('addressType')!r}"
    endpoints = obj.get("endpoints")
    if endpoints is None:
        endpoints = []
    if not isinstance(endpoints, list) or len(endpoints) > 1000:
        return "endpoints: Too many: must have at most 1000 items"
    for i, ep in enumerate(endpoints):
        addresses = ep.get("addresses")
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= 100:
            return f"endpoints[{i}].addresses: Required value: must contain 1-100 addresses"
        hostname = ep.get("hostname")
        if hostname is not None and not _DNS1123_LABEL.match(hostname):
            return f"endpoints[{i}].hostname: Invalid value: {hostname!r}"
    for i, port in enumerate(obj.get("ports") or []):
        value = port.get("port")
        if value is not None and (not isinstance(value, int) or not 0 <= value <= 65535):
            return f"ports[{i}].port: Invalid value: {value!r}"
    return None


def _lease(name: str, obj: Obj) -> str | None:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        return f"spec.leaseDurationSeconds: Invalid value: {duration!r}: must be greater than 0"
    return None


def _namespace(name: str, obj: Obj) -> str | None:
    if not _DNS1123_LABEL.match(name):
        return f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 label"
    return None


def _pod(name: str, obj: Obj) -> str | None:
    if not (obj.get("spec") or {}).get("containers"):
        return "spec.containers: Required value"
    return None
