"""The mesh's intentions compiled into one sidecar's snapshot (schema v3). Pure.

The registry answers `GET /v1/intentions` with the mesh-wide default and every intention in
Consul's evaluation order. A sidecar needs only those whose destination is its own service
(exactly, or `*` of its namespace, or `*/*`), kept in that order; each becomes a rule the
proxy matches against the caller's verified SPIFFE ID (`proxy/_intentions.py`). Consul's
`PathExact`-style field names become the snapshot's `path_exact` style.

Every intention is checked again with the server's rules before it is compiled: a proxy
refuses a whole snapshot it cannot parse, so one intention written around the API (straight
into etcd) must not freeze every sidecar it reaches. A broken one is logged and counted in
`rejected`, and compiled as a deny from its source (it was meant to say something about that
source; denying is the reading that cannot open anything), or left out when its source is not
even a name that could match an identity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ca import is_dns_label
from registry.intentions import Intention, IntentionProblem, Name, evaluation_order, parse_body

log = logging.getLogger("weft.agent.intentions")
MAX_ID = 64  # the snapshot schema's bound on a rule id

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
        self.rejected: dict[str, str] = {}  # intention ID -> why it was not compiled as sent
        kept = []
        for doc in body.get("intentions") or ():
            try:
                intention = Intention.from_doc(doc)
            except (KeyError, TypeError, ValueError):
                log.warning("an intention without its names was left out: %.200r", doc)
                self.rejected[str(doc.get("ID", "?"))[:MAX_ID]] = "no source or destination"
                continue
            kept.append(intention)
        self.intentions = evaluation_order(kept)

    def compile(self, namespace: str, service: str) -> dict[str, Any]:
        """The snapshot's `intentions` for the sidecar of `namespace/service`."""
        rules = []
        for i in self.intentions:
            if not i.destination.matches(namespace, service):
                continue
            if not _name_ok(i.source):
                continue  # it can match no identity
            rule: dict[str, Any] = {"id": i.id[:MAX_ID] or "?", "source": _source(i.source)}
            problem = _problem(i)
            if problem:
                if i.id not in self.rejected:
                    log.warning(
                        "intention %s is not valid (%s); compiled as a deny from %s",
                        i.id,
                        problem,
                        i.source,
                    )
                self.rejected[i.id] = problem
                rule["action"] = "deny"
            elif "Permissions" in i.doc:
                rule["permissions"] = [_permission(p) for p in i.doc["Permissions"]]
            else:
                rule["action"] = i.action
            rules.append(rule)
        return {"default": self.default, "rules": rules}


def _name_ok(name: Name) -> bool:
    return all(part == "*" or is_dns_label(part) for part in (name.namespace, name.service))


def _problem(i: Intention) -> str:
    if len(i.id) > MAX_ID:
        return f"ID: longer than {MAX_ID} characters"
    try:
        parse_body({k: v for k, v in i.doc.items() if k != "ID"})
    except IntentionProblem as exc:
        return str(exc)
    return ""


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
