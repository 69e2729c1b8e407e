"""The mesh's intentions compiled into one sidecar's snapshot (schema v3). Pure.

The registry answers `GET /v1/intentions` with the mesh-wide default and every intention in
Consul's evaluation order. A sidecar needs only those whose destination is its own service
(exactly, or `*` of its namespace, or `*/*`), kept in that order; each becomes a rule the
proxy matches against the caller's verified SPIFFE ID (`proxy/_intentions.py`). Consul's
`PathExact`-style field names become the snapshot's `path_exact` style.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.intentions import Intention, Name, evaluation_order

_HTTP_FIELDS = {
    "PathExact": "path_exact",
    "PathPrefix": "path_prefix",
    "PathRegex": "path_regex",
    "Methods": "methods",
}
_HEADER_FIELDS = {
    "Name": "name",
    "Present": "present",
    "Exact": "exact",
    "Prefix": "prefix",
    "Suffix": "suffix",
    "Regex": "regex",
    "Invert": "invert",
}


class IntentionView:
    """One answer of `GET /v1/intentions`, parsed."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.default = "deny" if body.get("default") == "deny" else "allow"
        self.intentions = evaluation_order(
            Intention.from_doc(doc) for doc in body.get("intentions") or ()
        )

    def compile(self, namespace: str, service: str) -> dict[str, Any]:
        """The snapshot's `intentions` for the sidecar of `namespace/service`."""
        rules = []
        for i in self.intentions:
            if not i.destination.matches(namespace, service):
                continue
            rule: dict[str, Any] = {"id": i.id, "source": _source(i.source)}
            if "Permissions" in i.doc:
                rule["permissions"] = [_permission(p) for p in i.doc["Permissions"]]
            else:
                rule["action"] = i.action
            rules.append(rule)
        return {"default": self.default, "rules": rules}


def _source(name: Name) -> str:
    if name.namespace == "*":
        return "*"
    return f"{name.namespace}/{name.service}"


def _permission(perm: Mapping[str, Any]) -> dict[str, Any]:
    http = perm.get("HTTP") or {}
    out: dict[str, Any] = {k2: http[k] for k, k2 in _HTTP_FIELDS.items() if k in http}
    if http.get("Header"):
        out["headers"] = [
            {k2: h[k] for k, k2 in _HEADER_FIELDS.items() if k in h} for h in http["Header"]
        ]
    return {"action": perm["Action"], "http": out}
