"""Gateway resources: the `Gateway` kind and the gateway form of a `Route`. Pure.

    apiVersion: weft.dev/v1
    kind: Gateway
    metadata: {name: public}
    spec:
      service: edge                  # the ingress-gateway service whose instances serve it
      hosts: [shop.example.com, "*.example.com"]

    apiVersion: weft.dev/v1
    kind: Route
    metadata: {name: shop-public}
    spec:
      gateway: public                # instead of `service`: requests entering at this Gateway
      hosts: [shop.example.com]      # for these hosts (each one the Gateway serves)
      rules:
      - name: books
        match: [{path: {segmentPrefix: /books}}]
        backends: [{service: books}]

A Route with `gateway` applies at that gateway only, never in a sidecar (Istio's `gateways:`,
Gateway API's Gateway parentRef); every rule names its backends (there is no "the service
itself" at the edge), and a request no rule takes is 404. One host of one Gateway belongs to
one Route. The checks here are called by `_resources` for a document and across a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ._resource_checks import NAME, Checker, Problems, check_list, check_object, check_service

MAX_HOSTS = 64
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def host_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a host name, got {type(value).__name__}"
    name = value[2:] if value.startswith("*.") else value
    if value != "*" and (len(name) > 253 or not _DNS.fullmatch(name)):
        return f"{value[:80]!r} is not a host (a lower-case DNS name, '*.' and one, or '*')"
    return None


def check_host(value: Any, path: str, out: Problems) -> None:
    problem = host_problem(value)
    if problem:
        out.add(path, problem)


check_hosts: Checker = check_list(check_host, MAX_HOSTS, least=1)


def gateway_spec(value: Any, path: str, out: Problems) -> None:
    check_object(
        value, path, out, {"service": check_service, "hosts": check_hosts}, required=("hosts",)
    )


def gateway_service(doc: dict[str, Any]) -> str:
    """The ingress-gateway service a Gateway document configures."""
    return str(doc["spec"].get("service") or doc["metadata"]["name"])


def gateway_route_rules(value: dict[str, Any], path: str, out: Problems) -> None:
    """The rules only a gateway Route has (the fields themselves are checked by the caller)."""
    if "service" in value:
        out.add(f"{path}.gateway", "give service (a sidecar Route) or gateway, not both")
    if "hosts" not in value:
        out.add(f"{path}.hosts", "is required for a gateway Route")
    if value.get("unmatched") == "default":
        out.add(
            f"{path}.unmatched",
            "a gateway Route has no service to fall back to: requests no rule takes get 404",
        )
    for i, rule in enumerate(value.get("rules") or []):
        if isinstance(rule, dict) and not rule.get("backends"):
            out.add(f"{path}.rules[{i}].backends", "a gateway Route's rules must name backends")


def covered(host: str, patterns: Iterable[str]) -> bool:
    """Whether a Gateway with `patterns` serves `host` (a pattern itself)."""
    for pattern in patterns:
        if pattern in ("*", host):
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern:
            return True
    return False


def cross_check(
    indexed: list[tuple[str, dict[str, Any]]], stored: list[dict[str, Any]]
) -> list[str]:
    """Across a batch (`(where, doc)` of each valid new document) and what is stored (already
    less what the batch replaces): a host of a Gateway is one Route's, and a Route's hosts
    are hosts its Gateway serves (when that Gateway is known)."""
    problems: list[str] = []
    gateways: dict[str, list[str]] = {}
    claimed: dict[tuple[str, str], str] = {}
    for doc in [*stored, *(d for _, d in indexed)]:
        if doc["kind"] == "Gateway":
            gateways[doc["metadata"]["name"]] = list(doc["spec"]["hosts"])
    for doc in stored:
        if doc["kind"] == "Route" and "gateway" in doc["spec"]:
            for host in doc["spec"]["hosts"]:
                claimed[(doc["spec"]["gateway"], host)] = doc["metadata"]["name"]
    for where, doc in indexed:
        if doc["kind"] != "Route" or "gateway" not in doc["spec"]:
            continue
        name, gateway = doc["metadata"]["name"], doc["spec"]["gateway"]
        for i, host in enumerate(doc["spec"]["hosts"]):
            other = claimed.setdefault((gateway, host), name)
            if other != name:
                problems.append(
                    f"{where}: spec.hosts[{i}]: host {host!r} of Gateway {gateway!r} already "
                    f"belongs to Route {other!r}"
                )
            served = gateways.get(gateway)
            if served is not None and not covered(host, served):
                problems.append(
                    f"{where}: spec.hosts[{i}]: Gateway {gateway!r} does not serve {host!r} "
                    f"(its hosts: {', '.join(served)})"
                )
    return problems


NAME_CHECK = NAME  # a Route's `gateway` names a Gateway resource
