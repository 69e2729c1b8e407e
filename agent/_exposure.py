"""Is a sidecar's application reachable without its sidecar? (parsing is pure; reading is not)

With a sidecar, an application should listen on loopback only: the sidecar's mTLS port is the
way in, where callers are authenticated and authorized. An application bound to 0.0.0.0 or a
host address can be called directly, bypassing both. The agent cannot rebind it; it warns,
naming the service and the address (docs/operations.md says how to bind to loopback).

Linux's /proc/net/tcp{,6} list listening sockets (state 0A) as `hex-address:hex-port`;
IPv4 addresses are one little-endian 32-bit word, IPv6 four of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

_LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening(lines: Iterable[str]) -> list[tuple[str, int]]:
    """(address, port) of every listening socket in /proc/net/tcp-style lines."""
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN or ":" not in fields[1]:
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        try:
            out.append((str(_address(hex_address)), int(hex_port, 16)))
        except ValueError:
            continue
    return out


def exposed(sockets: Iterable[tuple[str, int]], port: int) -> list[str]:
    """The non-loopback addresses listening on `port` (empty: only loopback, or nothing)."""
    out = []
    for address, bound in sockets:
        if bound != port:
            continue
        ip = ipaddress.ip_address(address)
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (mapped or ip).is_loopback:
            out.append(address)
    return sorted(set(out))


def host_listening(root: Path = Path("/proc/net")) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for name in ("tcp", "tcp6"):
        try:
            out.extend(listening((root / name).read_text().splitlines()[1:]))
        except OSError:
            continue  # no IPv6, or not Linux: nothing to say
    return out
