"""Where a server-run HTTP/TCP check may point (`check_allow_networks`).

The leader runs the HTTP and TCP checks of services registered straight through the API, from
inside the server's network, and writes what it read into the check's output. Unbounded, that
lets anyone who can register a service read what only the server can reach: cloud metadata at
169.254.169.254, etcd on the server's loopback. So a server-run check may reach:

- the instance's own address (its `Address`, or the node address the registration came from),
  unless that address is loopback, link-local, unspecified, multicast or reserved; loopback
  counts only when the registration itself came from loopback (that client could reach it
  anyway), the rest never;
- anything in `check_allow_networks` (CIDRs), which is how an operator allows more, metadata
  and loopback included.

It is checked at registration (400 naming the field) and again at every probe, on the
addresses the host name resolves to then, and the probe connects to the address it checked
(so a name that re-resolves elsewhere between the check and the connection, DNS rebinding,
reaches nothing new). A refused probe sets the check critical with the reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from ._errors import InvalidInput
from ._model import Check, Instance

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 2.0


def _ip(value: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(value.strip("[]").split("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _special(ip: IP) -> bool:
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or (ip.is_reserved)
    )


def target(check: Check) -> tuple[str, int] | None:
    """(host, port) an HTTP or TCP check connects to; None for other kinds."""
    if check.type == "http":
        parts = urlsplit(check.http)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return (parts.hostname or "", port)
    if check.type == "tcp":
        host, _, digits = check.tcp.rpartition(":")
        return (host.strip("[]"), int(digits)) if digits.isdigit() else None
    return None


@dataclass(frozen=True)
class CheckReach:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, networks: Iterable[str]) -> CheckReach:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def problem(self, address: str, inst: Instance, also_own: Iterable[str] = ()) -> str | None:
        """Why a server-run check must not connect to `address` for `inst` (None: it may).

        `also_own`: what the instance's address resolves to, when it is a host name."""
        ip = _ip(address)
        if ip is None:
            return f"{address!r} is not an IP address"
        if any(ip in net for net in self.networks if net.version == ip.version):
            return None
        came_from = _ip(inst.node_address)
        if ip.is_loopback and came_from is not None and came_from.is_loopback:
            return None  # registered from this host, which reaches its own loopback anyway
        own = {a for a in (_ip(inst.address), came_from, *map(_ip, also_own)) if a is not None}
        if ip in own:
            if not _special(ip):
                return None
            return (
                f"{ip} is a {'loopback' if ip.is_loopback else 'link-local or reserved'} address: "
                "the server only checks it if check_allow_networks lists it"
            )
        return (
            f"{ip} is not this instance's address ({inst.address or inst.node_address or 'none'}) "
            "nor in the server's check_allow_networks"
        )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to now (an IP literal is itself)."""
    if _ip(host) is not None:
        return [str(_ip(host))]
    with trio.fail_after(RESOLVE_TIMEOUT):
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    found = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    # IPv4 first: what a local app bound to 127.0.0.1 answers on when a name gives both.
    return [str(ip) for ip in sorted(found, key=lambda ip: (ip.version, ip))]


async def _own_names(inst: Instance) -> list[str]:
    """What an instance's `Address` resolves to, if it is a host name (nothing if it fails)."""
    if not inst.address or _ip(inst.address) is not None:
        return []
    try:
        return await resolve(inst.address, 0)
    except (OSError, trio.TooSlowError):
        return []


async def pick(reach: CheckReach, check: Check, inst: Instance) -> tuple[str | None, str]:
    """(address to connect to, "") or (None, why the check may not run)."""
    where = target(check)
    if where is None:
        return None, f"{check.type} check {check.id}: check could not run: no host and port in it"
    host, port = where
    try:
        addresses = await resolve(host, port)
    except (OSError, trio.TooSlowError) as exc:
        return None, (
            f"{check.type} check {check.id}: check could not run: {host!r} does not resolve: "
            f"{exc or 'timeout'}"
        )
    own = await _own_names(inst)
    for address in addresses:
        problem = reach.problem(address, inst, own)
        if problem is not None:
            return None, f"refused by check_allow_networks: {host} resolves to {problem}"
    if not addresses:
        return None, f"{host!r} resolves to no address"
    return addresses[0], ""


async def check_registration(
    reach: CheckReach, inst: Instance, checks: Sequence[Check], fields: Sequence[str]
) -> None:
    """400 naming the field if a server-run check points where the server may not go.

    A host name that does not resolve now is left to probe time (the service may not be up).
    """
    for check, field in zip(checks, fields, strict=True):
        if check.runner != "server" or target(check) is None:
            continue
        host, port = target(check)  # type: ignore[misc]
        try:
            addresses = await resolve(host, port)
        except (OSError, trio.TooSlowError):
            continue
        own = await _own_names(inst)
        for address in addresses:
            problem = reach.problem(address, inst, own)
            if problem is not None:
                raise InvalidInput(
                    f"{field}: the server will not run check {check.id!r} against {host}: "
                    f"{problem}",
                    field=field,
                )


def consul_fields(checks: Sequence[Check]) -> list[str]:
    """Field names for errors about a Consul registration's checks, in their order."""
    return [
        f"{'Check' if len(checks) == 1 else f'Checks[{i}]'}.{c.type}" for i, c in enumerate(checks)
    ]


def native_fields(checks: Sequence[Check], path: str = "") -> list[str]:
    at = f"{path}." if path else ""
    return [f"{at}checks[{i}].{c.type}" for i, c in enumerate(checks)]
