"""Kubernetes names to registry names, and anchors' route names to Weft rule names.

The rule (docs/importers.md): a host or service reference is a DNS name
`<service>[.<namespace>[.svc[.<cluster domain>]]][:port]`; its registry service is the first
label, `<service>`. `reviews.default.svc.cluster.local`, `reviews.default`, `reviews` and
`reviews:9080` all name `reviews` (`weft apply`, `weft convert`). A caller may pass its own
naming instead: the Kubernetes adapter passes the one it registers Services under
(`--name-template`, the `weft.io/service-name` annotation), so a VirtualService in namespace `ns`
for `reviews` steers what the adapter registered for Service `ns/reviews`. A naming is given
the Kubernetes name and its namespace: the host's own (`reviews.ns...`), else the namespace of
the document that names it, else None.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (Kubernetes service name, its namespace or None) -> registry service, or None if none.
Naming = Callable[[str, str | None], str | None]

_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def service_of(
    host: object, namespace: str | None = None, naming: Naming | None = None
) -> str | None:
    """The registry service a Kubernetes host or name refers to, or None if it is none.
    `namespace` is the one a short name is read in; `naming` maps (name, namespace) to the
    registry name (default: the name itself, the documented rule)."""
    if not isinstance(host, str):
        return None
    labels = host.strip().lower().split(":", 1)[0].split(".")
    name = labels[0]
    if not _SERVICE.match(name):
        return None
    if naming is None:
        return name
    if len(labels) > 1 and labels[1]:
        namespace = labels[1]
    mapped = naming(name, namespace or None)
    return mapped if mapped is not None and _SERVICE.match(mapped) else None


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
