"""Kubernetes names to registry names, and anchors' route names to Weft rule names.

The rule (docs/importers.md): a host or service reference is a DNS name
`<service>[.<namespace>[.svc[.<cluster domain>]]][:port]`; its registry service is the first
label, `<service>`. `reviews.default.svc.cluster.local`, `reviews.default`, `reviews` and
`reviews:9080` all name `reviews`. This is how the Kubernetes adapter names the services it
syncs (by their Kubernetes name; the namespace is not part of a registry name), so a resource
written for a cluster addresses the same instances on VMs.
"""

from __future__ import annotations

import re

_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def service_of(host: object) -> str | None:
    """The registry service a Kubernetes host or name refers to, or None if it is none."""
    if not isinstance(host, str):
        return None
    name = host.strip().lower().split(":", 1)[0].split(".", 1)[0]
    return name if _SERVICE.match(name) else None


def rule_name(given: object, fallback: str, taken: set[str]) -> str:
    """A Weft rule name (a-z, 0-9, `_.-`, at most 63) from an anchor's route name such as
    `GET /api/annotations` (-> `get-api-annotations`), unique among `taken`."""
    base = _UNSAFE.sub("-", str(given).lower()).strip("-_.") if given else ""
    base = re.sub(r"-*\.-*", ".", re.sub(r"-+", "-", base))[:56].rstrip("-_.") or fallback
    if not base[0].isalnum():
        base = f"r{base}"[:56]
    name, n = base, 2
    while name in taken or name == "default":
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name
