"""What the agent lets into a sidecar's snapshot from the registry's view (pure).

An instance's SPIFFE ID is derived, never taken from the record: the trust domain, the
instance's namespace and the service it was listed under. A record that disagrees (written
straight into etcd, or by a server from before identities were derived), or that a proxy would
refuse (an address or port outside the snapshot schema), is dropped here, logged once with the
reason and counted, so one bad instance costs only itself: every other endpoint, and every
other sidecar's snapshot, still gets through.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ca import InvalidIdentity, SpiffeId

log = logging.getLogger("weft.agent.screen")

_HOST = re.compile(r"[A-Za-z0-9.:_%-]{1,253}")
MAX_WEIGHT = 1_000_000
_REMEMBERED = 10_000


def _problem(
    service: str, inst: Mapping[str, Any], trust_domain: str
) -> tuple[str, str] | tuple[None, str]:
    """(reason, detail) if the instance must be dropped, else (None, its derived identity)."""
    try:
        derived = SpiffeId(trust_domain, str(inst.get("namespace") or "default"), service).uri
    except InvalidIdentity as exc:
        return "namespace", str(exc)
    stored = inst.get("identity") or ""
    if stored and stored != derived:
        return "identity", f"claims identity {stored!r}; an instance of {service!r} is {derived}"
    address = inst.get("address") or inst.get("node_address") or ""
    if not isinstance(address, str) or not _HOST.fullmatch(address):
        return "address", f"address {address!r} is not an IP address or host name"
    port = inst.get("sidecar_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return "port", f"sidecar_port {port!r} is outside 1-65535"
    weights = inst.get("weights") or {}
    weight = weights.get("passing", 1) if isinstance(weights, Mapping) else None
    if not isinstance(weight, int) or isinstance(weight, bool) or weight > MAX_WEIGHT:
        return "weight", f"weight {weight!r} is not a whole number up to {MAX_WEIGHT}"
    tags, meta = inst.get("tags") or [], inst.get("meta") or {}
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "tags", "tags are not a list of strings"
    if not isinstance(meta, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        return "meta", "meta is not a map of strings"
    return None, derived


class Screen:
    """Drops instances a sidecar must not be given; remembers what it said about which."""

    def __init__(self) -> None:
        self.dropped: Counter[tuple[str, str]] = Counter()  # (service, reason) -> instances
        self._told: dict[tuple[str, str, str], tuple[int, str]] = {}

    def admit(
        self, service: str, instances: Sequence[Mapping[str, Any]], trust_domain: str | None
    ) -> list[dict[str, Any]]:
        """The instances of `service` a snapshot may use, each with its derived identity.

        Instances without a sidecar pass unchanged (the snapshot leaves them out anyway).
        """
        if trust_domain is None:
            return [dict(i) for i in instances]
        out = []
        for inst in instances:
            if not inst.get("sidecar_port"):
                out.append(dict(inst))
                continue
            reason, detail = _problem(service, inst, trust_domain)
            if reason is None:
                out.append({**inst, "identity": detail})
                continue
            self._drop(service, inst, reason, detail)
        return out

    def _drop(self, service: str, inst: Mapping[str, Any], reason: str, detail: str) -> None:
        key = (service, str(inst.get("node", "")), str(inst.get("id", "")))
        version = (int(inst.get("modify_index") or 0), reason)
        if self._told.get(key) == version:
            return  # the same record again (every answer repeats it): said and counted once
        if len(self._told) > _REMEMBERED:
            self._told.clear()
        self._told[key] = version
        self.dropped[(service, reason)] += 1
        log.warning(
            "dropping instance %s of %s on node %s from sidecar snapshots: %s",
            key[2],
            service,
            key[1],
            detail,
            extra={"kv": {"service": service, "node": key[1], "id": key[2], "reason": reason}},
        )

    def metrics(self) -> str:
        """Prometheus text for what was dropped."""
        lines = [
            "# HELP weft_agent_instances_dropped_total Registry instances left out of sidecar "
            "snapshots (bad identity, namespace, address, port, weight, tags or meta), by service "
            "and reason.",
            "# TYPE weft_agent_instances_dropped_total counter",
        ]
        for (service, reason), count in sorted(self.dropped.items()):
            lines.append(
                f'weft_agent_instances_dropped_total{{service="{service}",reason="{reason}"}} '
                f"{count}"
            )
        return "\n".join(lines) + "\n"
