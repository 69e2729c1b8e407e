"""The `ExternalService` kind: a destination outside the mesh that sidecars may call. Pure.

    apiVersion: weft.dev/v1
    kind: ExternalService
    metadata: {name: partner-api}
    spec:
      hosts: [api.partner.test]          # names the application uses (HTTP_PROXY / CONNECT)
      ports: [{port: 443, protocol: https}]   # http | https | tls | tcp
      resolution: static                 # dns (default): the host's own name; static: addresses
      addresses: [127.0.0.1]
      tls:                               # for https: the sidecar originates TLS
        sni: api.partner.test            # default: the first host
        caBundle: "-----BEGIN CERTIFICATE-----..."   # default: the system's roots
        verify: true                     # default; false turns verification off

`https` means the application speaks plain HTTP to its sidecar and the sidecar opens TLS to
the service (TLS origination); `tls` and `tcp` are tunnelled with CONNECT as they are.
See docs/egress.md.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ._resource_checks import Checker, Problems, check_boolean, check_list, check_object

PROTOCOLS = ("http", "https", "tls", "tcp")
RESOLUTIONS = ("dns", "static")
MAX_HOSTS = 32
MAX_PORTS = 16
MAX_ADDRESSES = 64
MAX_CA_BYTES = 256 * 1024
# A DNS name with at least one dot (a bare word would shadow a mesh service's name).
HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def _host(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str) or not HOST.match(value):
        out.add(path, f"{value!r} is not a lower-case DNS name with a dot, e.g. api.example.com")


def _address(value: Any, path: str, out: Problems) -> None:
    try:
        ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        out.add(path, f"{value!r} is not an IP address")


def _port(value: Any, path: str, out: Problems) -> None:
    def number(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
            o.add(p, f"{v!r} is not a port (1..65535)")

    def protocol(v: Any, p: str, o: Problems) -> None:
        if v not in PROTOCOLS:
            o.add(p, f"{v!r}: use one of {', '.join(PROTOCOLS)}")

    check_object(value, path, out, {"port": number, "protocol": protocol}, ("port", "protocol"))


def _ca_bundle(value: Any, path: str, out: Problems) -> None:
    if (
        not isinstance(value, str)
        or "-----BEGIN CERTIFICATE-----" not in value
        or len(value) > MAX_CA_BYTES
    ):
        out.add(path, f"expected PEM certificates (at most {MAX_CA_BYTES} bytes)")


def _tls(value: Any, path: str, out: Problems) -> None:
    fields: dict[str, Checker] = {"sni": _host, "caBundle": _ca_bundle, "verify": check_boolean}
    check_object(value, path, out, fields)


def check_spec(value: Any, path: str, out: Problems) -> None:
    """Problems of an ExternalService's spec, each naming its field."""
    fields: dict[str, Checker] = {
        "hosts": check_list(_host, MAX_HOSTS, least=1),
        "ports": check_list(_port, MAX_PORTS, least=1),
        "resolution": lambda v, p, o: (
            None if v in RESOLUTIONS else o.add(p, f"{v!r}: use one of {', '.join(RESOLUTIONS)}")
        ),
        "addresses": check_list(_address, MAX_ADDRESSES, least=1),
        "tls": _tls,
    }
    if not check_object(value, path, out, fields, required=("hosts", "ports")):
        return
    resolution = value.get("resolution", "dns")
    if resolution == "static" and "addresses" not in value:
        out.add(f"{path}.addresses", "resolution static needs addresses")
    if resolution == "dns" and "addresses" in value:
        out.add(f"{path}.addresses", "addresses are for resolution static (dns uses the host)")
    ports = value.get("ports")
    if isinstance(ports, list):
        seen: set[Any] = set()
        for i, entry in enumerate(ports):
            number = entry.get("port") if isinstance(entry, dict) else None
            if number in seen:
                out.add(f"{path}.ports[{i}].port", f"port {number} is given twice")
            seen.add(number)
        https = any(isinstance(p, dict) and p.get("protocol") == "https" for p in ports)
        if "tls" in value and not https:
            out.add(f"{path}.tls", "TLS origination needs a port with protocol https")
