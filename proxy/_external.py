"""External services in the snapshot (v4): what they are and how the proxy reaches them. Pure.

An external service is an upstream whose endpoints are plain addresses outside the mesh (no
sidecar, no SPIFFE identity). For `https` the application speaks plain HTTP to its sidecar and
the sidecar originates TLS, verifying the service's certificate for its SNI name against the
declared roots (or the system's). See docs/egress.md.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class ExternalTls:
    sni: str
    ca_pem: str | None  # None: the system's roots
    verify: bool


@dataclass(frozen=True, slots=True)
class External:
    hosts: tuple[str, ...]
    port: int
    protocol: str  # http | https | tls | tcp
    tls: ExternalTls | None  # set for https


def external_of(entry: dict[str, Any], path: str, problems: list[str]) -> External:
    """An `external[]` entry (already schema-checked) and the rules a schema cannot say."""
    hosts = tuple(h.lower().rstrip(".") for h in entry["hosts"])
    tls_doc = entry.get("tls")
    tls = None
    if entry["protocol"] == "https":
        tls_doc = tls_doc or {}
        tls = ExternalTls(
            sni=tls_doc.get("sni", hosts[0]),
            ca_pem=tls_doc.get("ca_pem"),
            verify=tls_doc.get("verify", True),
        )
        if tls.ca_pem is not None:
            try:
                origination_context(tls)
            except (ssl.SSLError, ValueError) as exc:
                problems.append(f"{path}.tls.ca_pem: not usable PEM certificates ({exc})")
    elif tls_doc is not None:
        problems.append(f"{path}.tls: TLS origination is for protocol https")
    return External(hosts, int(entry["port"]), entry["protocol"], tls)


@lru_cache(maxsize=256)  # one context per distinct setting, not one per snapshot
def origination_context(tls: ExternalTls) -> ssl.SSLContext:
    """A client context that verifies the service as a browser would (unless told not to)."""
    if tls.ca_pem is not None:
        ctx = ssl.create_default_context(cadata=tls.ca_pem)
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def origination(external: External | None) -> tuple[ssl.SSLContext, str] | None:
    """What a cluster needs to originate TLS to `external`, or None for plain connections."""
    if external is None or external.tls is None:
        return None
    return origination_context(external.tls), external.tls.sni
