"""The gateway's virtual hosts: which route table takes a request, by its Host. Pure.

A gateway snapshot (docs/gateway.md) is a proxy snapshot whose upstreams are the services the
gateway calls, plus a `gateway` section the sidecars never see:

    "gateway": {"virtual_hosts": [
        {"name": "books", "hosts": ["books.example.com", "*.books.example.com"],
         "precedence": "order", "retry_budget": {...},
         "routes": [{"name": "api", "match": [...], "backends": [{"upstream": "books"}]}]}]}

Each virtual host is a route table exactly like an upstream's (`_route_table`), so matching,
splits, timeouts, retries, faults, mirrors and header changes behave as they do in a sidecar.
A host pattern is a DNS name (`books.example.com`), a wildcard for every name below a suffix
(`*.example.com`: `a.example.com` and `a.b.example.com`, never `example.com`) or `*`. An
exact name beats the longest wildcard suffix, which beats `*`; a host two virtual hosts claim
refuses the document.

The section is checked with the snapshot's own schema: each virtual host is checked as if it
were an upstream with routes, and problems are named by their place in `gateway`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._route_table import RouteTable, build_table
from ._schema import snapshot_validator

MAX_VIRTUAL_HOSTS = 1024
MAX_HOSTS = 64
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_VHOST_FIELDS = {"name", "hosts", "routes", "precedence", "retry_budget"}


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    hosts: tuple[str, ...]
    table: RouteTable


def pattern_problem(pattern: Any) -> str | None:
    """Why `pattern` is no host pattern, or None."""
    if not isinstance(pattern, str):
        return f"expected a host name, got {type(pattern).__name__}"
    if pattern == "*":
        return None
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if len(name) > 253 or not _DNS.fullmatch(name):
        return (
            f"{pattern!r} is not a host pattern (a lower-case DNS name, '*.' and a DNS name, "
            "or '*')"
        )
    return None


def host_of(value: bytes | None) -> str | None:
    """The host a Host header names (lower-cased, without port or final dot), or None when
    it names none: absent, empty, an IP literal in brackets, or not a DNS name."""
    if not value:
        return None
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        text = host
    text = text.rstrip(".")
    if not text or len(text) > 253 or not _DNS.fullmatch(text):
        return None
    return text


class HostTable:
    """Virtual hosts indexed for lookup by host name."""

    def __init__(self, vhosts: Sequence[VirtualHost]) -> None:
        self.vhosts = tuple(vhosts)
        self._exact: dict[str, VirtualHost] = {}
        wildcards: list[tuple[str, VirtualHost]] = []
        self._any: VirtualHost | None = None
        for vhost in vhosts:
            for pattern in vhost.hosts:
                if pattern == "*":
                    self._any = vhost
                elif pattern.startswith("*."):
                    wildcards.append((pattern[1:], vhost))  # ".example.com"
                else:
                    self._exact[pattern] = vhost
        wildcards.sort(key=lambda item: -len(item[0]))
        self._wildcards = tuple(wildcards)

    def find(self, host: str) -> VirtualHost | None:
        found = self._exact.get(host)
        if found is not None:
            return found
        for suffix, vhost in self._wildcards:
            if host.endswith(suffix):
                return vhost
        return self._any

    def names(self) -> list[str]:
        return [pattern for vhost in self.vhosts for pattern in vhost.hosts]


def _fake_upstream(i: int, vhost: Mapping[str, Any]) -> dict[str, Any]:
    fake: dict[str, Any] = {"name": f"vhost{i}", "protocol": "http", "endpoints": []}
    for key in ("routes", "precedence", "retry_budget"):
        if key in vhost:
            fake[key] = vhost[key]
    return fake


def build_hosts(section: Any, upstreams: Mapping[str, str], problems: list[str]) -> HostTable:
    """The `gateway` section to a HostTable; every problem is appended to `problems`.

    `upstreams` maps the snapshot's upstream names to their protocol: a backend must be one of
    them, and HTTP."""
    if not isinstance(section, dict) or set(section) - {"virtual_hosts"}:
        problems.append("gateway: expected an object with virtual_hosts")
        return HostTable(())
    listed = section.get("virtual_hosts", [])
    if not isinstance(listed, list) or len(listed) > MAX_VIRTUAL_HOSTS:
        problems.append(
            f"gateway.virtual_hosts: expected a list of at most {MAX_VIRTUAL_HOSTS} objects"
        )
        return HostTable(())
    vhosts: list[VirtualHost] = []
    owners: dict[str, str] = {}
    names: set[str] = set()
    for i, vh in enumerate(listed):
        where = f"gateway.virtual_hosts[{i}]"
        if not isinstance(vh, dict):
            problems.append(f"{where}: expected an object")
            continue
        unknown = sorted(set(vh) - _VHOST_FIELDS)
        if unknown:
            problems.append(f"{where}.{unknown[0]}: unknown field")
            continue
        name, hosts, routes = vh.get("name"), vh.get("hosts"), vh.get("routes")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: is required (a string)")
            continue
        if name in names:
            problems.append(f"{where}.name: virtual host {name!r} is defined twice")
        names.add(name)
        if not isinstance(hosts, list) or not 1 <= len(hosts) <= MAX_HOSTS:
            problems.append(f"{where}.hosts: expected a list of 1 to {MAX_HOSTS} host patterns")
            continue
        if not isinstance(routes, list) or not routes:
            problems.append(f"{where}.routes: a virtual host needs at least one route")
            continue
        for j, pattern in enumerate(hosts):
            problem = pattern_problem(pattern)
            if problem:
                problems.append(f"{where}.hosts[{j}]: {problem}")
            elif pattern in owners and owners[pattern] != name:
                problems.append(
                    f"{where}.hosts[{j}]: {pattern!r} is also a host of virtual host "
                    f"{owners[pattern]!r}"
                )
            else:
                owners[pattern] = name
        fake = _fake_upstream(i, vh)
        schema_problems = snapshot_validator().errors(
            {
                "schema": "weft.proxy.snapshot/v2",
                "version": 0,
                "identity": "spiffe://gateway.invalid/ns/default/svc/gateway",
                "tls": {"cert": "-", "key": "-", "bundle": "-"},
                "upstreams": [fake],
            }
        )
        if schema_problems:
            problems.extend(p.replace("upstreams[0]", where, 1) for p in schema_problems)
            continue
        for j, route in enumerate(routes):
            if not route.get("backends"):
                problems.append(
                    f"{where}.routes[{j}].backends: a gateway route must name its backends"
                )
        table = build_table(
            fake["name"],
            routes,
            precedence=vh.get("precedence", "order"),
            budget=vh.get("retry_budget"),
            path=f"{where}.",
            problems=problems,
        )
        for ref in sorted(table.backends(), key=lambda r: r.cluster_key):
            protocol = upstreams.get(ref.upstream)
            if protocol is None:
                problems.append(
                    f"{where}.routes: backend {ref.upstream!r} is not an upstream of this snapshot"
                )
            elif protocol != "http":
                problems.append(f"{where}.routes: backend {ref.upstream!r} is not HTTP")
        vhosts.append(VirtualHost(name, tuple(hosts), table))
    return HostTable(vhosts)
