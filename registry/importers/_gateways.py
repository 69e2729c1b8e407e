"""Ingress gateways from Istio and Gateway API: Gateway -> Gateway, and the gateway half of a
VirtualService (`gateways:`) or an HTTPRoute (a Gateway parentRef) -> a gateway Route. Pure.

The gateway service that serves a Weft Gateway is its `spec.service`: from an Istio
Gateway's `selector` `app` label when it names a service (else the Gateway's name), from a
Gateway API Gateway's name. Certificates are never imported: the gateway host holds its
operator certificates as files (`weft gateway --certificates`, docs/gateway.md), so a
`credentialName` or `certificateRefs` is warned about. A host `ns/name` (Istio) is `name`.
"""

from __future__ import annotations

import copy
from typing import Any

from ._notes import Notes

_HTTP = {"HTTP", "HTTPS", "HTTP2", "GRPC"}


def _host(value: Any) -> str | None:
    """An Istio or Gateway API host to a Weft host pattern (namespace part dropped)."""
    if not isinstance(value, str) or not value:
        return None
    host = value.rsplit("/", 1)[-1].strip().lower()
    return host or None


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _gateway(name: str, service: str, hosts: list[str], notes: Notes) -> list[dict[str, Any]]:
    hosts = list(dict.fromkeys(hosts))
    if not hosts:
        notes.problem("spec", "no HTTP host to serve")
        return []
    spec: dict[str, Any] = {"hosts": hosts}
    if service != name:
        spec["service"] = service
    return [_doc("Gateway", name, spec)]


def convert_istio_gateway(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    name = str((doc.get("metadata") or {}).get("name"))
    notes.unknown(spec, "spec", {"selector", "servers"})
    selector = spec.get("selector") or {}
    service = notes.service(selector.get("app")) or name
    if selector:
        notes.note(
            "spec.selector",
            f"the gateway is the ingress-gateway service {service!r}: run `weft gateway` for "
            "a service of that name",
        )
    hosts: list[str] = []
    for i, server in enumerate(spec.get("servers") or []):
        where = f"spec.servers[{i}]"
        notes.unknown(server, where, {"port", "hosts", "tls", "name", "bind", "defaultEndpoint"})
        protocol = str((server.get("port") or {}).get("protocol", "HTTP")).upper()
        if protocol not in _HTTP:
            notes.ignored(where, f"(protocol {protocol}) is not HTTP; ignored")
            continue
        tls = server.get("tls") or {}
        if tls.get("httpsRedirect"):
            notes.ignored(f"{where}.tls.httpsRedirect")
        if tls.get("credentialName") or tls.get("serverCertificate"):
            notes.ignored(
                f"{where}.tls",
                "is not imported: give the gateway its certificate files (--certificates)",
            )
        for key in ("bind", "defaultEndpoint"):
            if key in server:
                notes.ignored(f"{where}.{key}")
        for j, value in enumerate(server.get("hosts") or []):
            host = _host(value)
            if host is None:
                notes.problem(f"{where}.hosts[{j}]", f"{value!r} is not a host")
            else:
                hosts.append(host)
    return _gateway(name, service, hosts, notes)


def convert_api_gateway(doc: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    name = str((doc.get("metadata") or {}).get("name"))
    notes.unknown(spec, "spec", {"gatewayClassName", "listeners", "addresses", "infrastructure"})
    for key in ("addresses", "infrastructure"):
        if key in spec:
            notes.ignored(f"spec.{key}")
    hosts: list[str] = []
    for i, listener in enumerate(spec.get("listeners") or []):
        where = f"spec.listeners[{i}]"
        notes.unknown(
            listener, where, {"name", "hostname", "port", "protocol", "tls", "allowedRoutes"}
        )
        protocol = str(listener.get("protocol", "HTTP")).upper()
        if protocol not in _HTTP:
            notes.ignored(where, f"(protocol {protocol}) is not HTTP; ignored")
            continue
        if (listener.get("tls") or {}).get("certificateRefs"):
            notes.ignored(
                f"{where}.tls.certificateRefs",
                "is not imported: give the gateway its certificate files (--certificates)",
            )
        if "allowedRoutes" in listener:
            notes.ignored(f"{where}.allowedRoutes")
        hosts.append(_host(listener.get("hostname")) or "*")
    return _gateway(name, name, hosts, notes)


def gateway_routes(
    name: str,
    gateways: list[str],
    hosts: list[str],
    rules: list[dict[str, Any]],
    extra: dict[str, Any],
    notes: Notes,
    *,
    mesh: bool = False,
) -> list[dict[str, Any]]:
    """One gateway Route per gateway, named `<document>-<gateway>` (the document's own name
    may also be the name of the Route it makes for the mesh). With a mesh half (`mesh`), no
    rule to serve at the gateways is a warning, not a refusal of the whole document."""
    if not gateways:
        return []
    kept = []
    for rule in rules:
        if rule.get("backends"):
            kept.append(copy.deepcopy(rule))
        else:
            notes.ignored(
                f"rule {rule['name']}",
                "routes nowhere (no destination) and is left out at the gateways",
            )
    if not kept:
        if mesh:
            notes.ignored(
                "spec.parentRefs", "(the Gateways) get no gateway Route: no rule names a backend"
            )
        else:
            notes.problem("rules", "no rule routes anywhere: nothing to serve at the gateways")
        return []
    rules = kept
    out = []
    for gateway in dict.fromkeys(gateways):
        route = f"{name}-{gateway}"[:63].rstrip("-.")
        spec = {"gateway": gateway, "hosts": hosts, **extra, "rules": rules}
        out.append(_doc("Route", route, spec))
    return out


def gateway_of(ref: Any) -> str | None:
    """An Istio `gateways:` entry (`ns/name` or `name`) to a Gateway name (None for mesh)."""
    if not isinstance(ref, str) or ref == "mesh":
        return None
    return ref.rsplit("/", 1)[-1] or None


def hosts_of(values: Any, notes: Notes, path: str) -> list[str]:
    out = []
    for j, value in enumerate(values or []):
        host = _host(value)
        if host is None:
            notes.problem(f"{path}[{j}]", f"{value!r} is not a host")
        else:
            out.append(host)
    return out
