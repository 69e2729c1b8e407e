"""External services compiled into every sidecar's snapshot (schema v4). Pure.

Each `ExternalService` port becomes one `external` entry: the first port under the
resource's name (what Routes and the ServiceDefaults of that name apply to), further ports
as `<name>-<port>`. Static resolution connects to the declared addresses; dns connects to
the first host's name, resolved when connecting. `https` ports carry the TLS the sidecar
originates (SNI, roots, verify). The calling service's own ServiceDefaults choose its
`outbound` mode (allow-any unless it says registry-only). See docs/egress.md.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ._traffic import Resources, upstream_fields

log = logging.getLogger("weft.agent.snapshots")

_UPSTREAM_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def external_entries(resources: Resources, taken: set[str]) -> list[dict[str, Any]]:
    """The `external` entries of a snapshot; names in `taken` (mesh upstreams) are skipped."""
    out: list[dict[str, Any]] = []
    for name, spec in sorted(resources.externals.items()):
        addresses = list(spec.get("addresses") or [spec["hosts"][0]])
        tls = spec.get("tls") or {}
        for i, port in enumerate(spec["ports"]):
            entry_name = name if i == 0 else f"{name}-{port['port']}"
            if entry_name in taken or not _UPSTREAM_NAME.match(entry_name):
                log.warning(
                    "external service left out",
                    extra={"kv": {"name": entry_name, "why": "name clash or too long"}},
                )
                continue
            entry: dict[str, Any] = {
                "name": entry_name,
                "hosts": list(spec["hosts"]),
                "port": port["port"],
                "protocol": port["protocol"],
                "addresses": addresses,
            }
            if port["protocol"] == "https":
                origination: dict[str, Any] = {"sni": tls.get("sni", spec["hosts"][0])}
                if "caBundle" in tls:
                    origination["ca_pem"] = tls["caBundle"]
                if tls.get("verify") is False:
                    origination["verify"] = False
                entry["tls"] = origination
            if port["protocol"] in ("http", "https"):
                entry.update(upstream_fields(entry_name, resources))
            out.append(entry)
    return out


def outbound_mode(service: str, resources: Resources) -> str:
    mode = resources.defaults.get(service, {}).get("outbound", "allow-any")
    return str(mode)
