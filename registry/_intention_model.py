"""Intentions: who may call whom, in Consul's shapes and with Consul's precedence. Pure.

An intention names a source and a destination (`SourceNS`/`SourceName`,
`DestinationNS`/`DestinationName`, each a DNS label or `*`) and either an `Action`
(`allow`/`deny`, an L4 intention) or an ordered list of L7 `Permissions`, never both.
`parse_body` checks what a client sent, strictly: an unknown field, a bad name, a regex that
does not compile, both `Action` and `Permissions` - each is an `IntentionProblem` naming the
field, and nothing is stored.

Precedence is Consul's table (docs: "Precedence and match order"): exact beats wildcard, and
the destination weighs more than the source.

    source ns  source name  dest ns  dest name  precedence
    exact      exact        exact    exact      9
    exact      *            exact    exact      8
    *          *            exact    exact      7
    exact      exact        exact    *          6
    exact      *            exact    *          5
    *          *            exact    *          4
    exact      exact        *        *          3
    exact      *            *        *          2
    *          *            *        *          1

The first intention (highest precedence) that matches a (source, destination) pair decides
alone; if it carries permissions, they decide per request and a request none of them
matches gets the mesh-wide default (it does not fall through to a lower intention).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ca import is_dns_label

WILDCARD = "*"
DEFAULT_NS = "default"
MAX_PERMISSIONS = 64
MAX_HEADERS = 32
MAX_METHODS = 16
MAX_REGEX = 1024
MAX_PATH = 4096
MAX_DESCRIPTION = 512
MAX_META = 64
ACTIONS = ("allow", "deny")
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

# What a client may send. The fields the server owns (ID, Precedence, the indexes and times)
# are accepted and ignored, so a client can send back what it read.
_WRITABLE = frozenset(
    {
        "SourceNS",
        "SourceName",
        "DestinationNS",
        "DestinationName",
        "SourceType",
        "Action",
        "Permissions",
        "Description",
        "Meta",
    }
)
_SERVER_OWNED = frozenset(
    {"ID", "Precedence", "CreateIndex", "ModifyIndex", "CreatedAt", "UpdatedAt", "Hash"}
)
_LOCAL_ONLY = ("SourcePartition", "DestinationPartition", "SourcePeer", "SourceSamenessGroup")
_HTTP_FIELDS = frozenset({"PathExact", "PathPrefix", "PathRegex", "Methods", "Header"})
_HEADER_FIELDS = frozenset({"Name", "Present", "Exact", "Prefix", "Suffix", "Regex", "Invert"})
_HEADER_MATCHES = ("Present", "Exact", "Prefix", "Suffix", "Regex")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class IntentionProblem(ValueError):
    """What is wrong with an intention; `field` names it (e.g. `Permissions[0].HTTP.PathRegex`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Name:
    """A namespace and service name, either of which may be `*`."""

    namespace: str
    service: str

    def __str__(self) -> str:
        return self.service if self.namespace == DEFAULT_NS else f"{self.namespace}/{self.service}"

    def matches(self, namespace: str, service: str) -> bool:
        return self.namespace in (WILDCARD, namespace) and self.service in (WILDCARD, service)


def check_name(namespace: Any, service: Any, field: str) -> Name:
    """A source or destination as sent; `field` is `Source` or `Destination`."""
    if not isinstance(service, str) or not service:
        raise IntentionProblem(f"{field}Name", "required: a service name or '*'")
    if not isinstance(namespace, str):
        raise IntentionProblem(f"{field}NS", "must be a string")
    namespace = namespace or DEFAULT_NS
    for part, value in ((f"{field}NS", namespace), (f"{field}Name", service)):
        if value != WILDCARD and not is_dns_label(value):
            raise IntentionProblem(
                part,
                f"{value!r} is neither '*' nor a DNS label (1-63 lowercase letters, digits or "
                "'-'): mesh identities are DNS labels, so it could never match",
            )
    if namespace == WILDCARD and service != WILDCARD:
        raise IntentionProblem(f"{field}Name", "a wildcard namespace needs a wildcard name")
    return Name(namespace, service)


def parse_name(text: str, field: str) -> Name:
    """`web`, `shop/web`, `*` (every service of the default namespace, as in Consul) or
    `*/*` (every service), as query parameters and the CLI take them."""
    namespace, _, service = text.rpartition("/")
    try:
        return check_name(namespace or DEFAULT_NS, service, field)
    except IntentionProblem as exc:
        raise IntentionProblem(field.lower(), str(exc)) from None


def precedence(source: Name, destination: Name) -> int:
    if destination.namespace == WILDCARD:
        base = 0
    elif destination.service == WILDCARD:
        base = 3
    else:
        base = 6
    if source.namespace == WILDCARD:
        return base + 1
    return base + (2 if source.service == WILDCARD else 3)


def _string(value: Any, field: str, *, limit: int = MAX_PATH) -> str:
    if not isinstance(value, str):
        raise IntentionProblem(field, "must be a string")
    if len(value) > limit:
        raise IntentionProblem(field, f"at most {limit} characters")
    return value


def _regex(value: Any, field: str) -> str:
    text = _string(value, field, limit=MAX_REGEX)
    try:
        re.compile(text)
    except re.error as exc:
        raise IntentionProblem(
            field, f"{text!r} is not a valid regular expression: {exc}"
        ) from None
    return text


def _object(value: Any, field: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise IntentionProblem(field, "must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise IntentionProblem(f"{field}.{unknown[0]}" if field else unknown[0], "unknown field")
    return value


def _header(raw: Any, field: str) -> dict[str, Any]:
    h = _object(raw, field, _HEADER_FIELDS)
    name = _string(h.get("Name"), f"{field}.Name", limit=256)
    if not _TOKEN.fullmatch(name):
        raise IntentionProblem(f"{field}.Name", f"{name!r} is not a header name")
    out: dict[str, Any] = {"Name": name}
    given = [k for k in _HEADER_MATCHES if k in h]
    if len(given) > 1:
        raise IntentionProblem(f"{field}.{given[1]}", f"give one of {', '.join(_HEADER_MATCHES)}")
    if not given:
        raise IntentionProblem(field, f"give one of {', '.join(_HEADER_MATCHES)}")
    kind = given[0]
    if kind == "Present":
        if h["Present"] is not True:
            raise IntentionProblem(f"{field}.Present", "must be true (use Invert for absent)")
        out["Present"] = True
    elif kind == "Regex":
        out["Regex"] = _regex(h["Regex"], f"{field}.Regex")
    else:
        out[kind] = _string(h[kind], f"{field}.{kind}")
    if "Invert" in h:
        if not isinstance(h["Invert"], bool):
            raise IntentionProblem(f"{field}.Invert", "must be true or false")
        if h["Invert"]:
            out["Invert"] = True
    return out


def _http(raw: Any, field: str) -> dict[str, Any]:
    http = _object(raw, field, _HTTP_FIELDS)
    out: dict[str, Any] = {}
    paths = [k for k in ("PathExact", "PathPrefix", "PathRegex") if k in http]
    if len(paths) > 1:
        raise IntentionProblem(
            f"{field}.{paths[1]}", "give at most one of PathExact, PathPrefix, PathRegex"
        )
    for key in paths:
        if key == "PathRegex":
            out[key] = _regex(http[key], f"{field}.{key}")
        else:
            value = _string(http[key], f"{field}.{key}")
            if not value.startswith("/"):
                raise IntentionProblem(f"{field}.{key}", f"{value!r} must start with '/'")
            out[key] = value
    if "Methods" in http:
        methods = http["Methods"]
        if not isinstance(methods, list) or not methods or len(methods) > MAX_METHODS:
            raise IntentionProblem(f"{field}.Methods", f"a list of 1 to {MAX_METHODS} methods")
        seen: list[str] = []
        for i, m in enumerate(methods):
            if not isinstance(m, str) or m not in HTTP_METHODS:
                raise IntentionProblem(
                    f"{field}.Methods[{i}]",
                    f"{m!r} is not one of {', '.join(sorted(HTTP_METHODS))}",
                )
            if m in seen:
                raise IntentionProblem(f"{field}.Methods[{i}]", f"{m} is listed twice")
            seen.append(m)
        out["Methods"] = seen
    if "Header" in http:
        headers = http["Header"]
        if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
            raise IntentionProblem(f"{field}.Header", f"a list of at most {MAX_HEADERS} matches")
        out["Header"] = [_header(h, f"{field}.Header[{i}]") for i, h in enumerate(headers)]
    if not out or out == {"Header": []}:
        raise IntentionProblem(field, "match on at least one of a path, Methods or Header")
    return out


def _permissions(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_PERMISSIONS:
        raise IntentionProblem("Permissions", f"a list of 1 to {MAX_PERMISSIONS} permissions")
    out = []
    for i, item in enumerate(raw):
        field = f"Permissions[{i}]"
        perm = _object(item, field, frozenset({"Action", "HTTP"}))
        action = perm.get("Action")
        if action not in ACTIONS:
            raise IntentionProblem(f"{field}.Action", f"{action!r} is not 'allow' or 'deny'")
        if "HTTP" not in perm:
            raise IntentionProblem(f"{field}.HTTP", "required: what requests it matches")
        out.append({"Action": action, "HTTP": _http(perm["HTTP"], f"{field}.HTTP")})
    return out


def parse_body(
    body: Any, *, source: Name | None = None, destination: Name | None = None
) -> dict[str, Any]:
    """The stored form of an intention a client sent (no ID, no times), or IntentionProblem.

    `source` and `destination` come from the query of `PUT .../exact`; there the body may
    leave the names out, and a body naming others is refused.
    """
    if not isinstance(body, dict):
        raise IntentionProblem("body", "expected an intention object")
    unknown = sorted(set(body) - _WRITABLE - _SERVER_OWNED - set(_LOCAL_ONLY))
    if unknown:
        raise IntentionProblem(unknown[0], "unknown field")
    for key in _LOCAL_ONLY:
        if body.get(key) not in (None, "", "default"):
            raise IntentionProblem(key, "partitions, peers and sameness groups are not supported")
    if body.get("SourceType", "consul") not in ("consul", ""):
        raise IntentionProblem("SourceType", f"{body['SourceType']!r}: only 'consul' is supported")
    names: dict[str, Name] = {}
    for field, given in (("Source", source), ("Destination", destination)):
        ns, name = body.get(f"{field}NS", ""), body.get(f"{field}Name")
        if given is not None:
            if name not in (None, "") and check_name(ns, name, field) != given:
                raise IntentionProblem(
                    f"{field}Name", f"the body names {name!r} but the query names {given}"
                )
            names[field] = given
        else:
            names[field] = check_name(ns, name, field)
    has_action, has_perms = body.get("Action") not in (None, ""), "Permissions" in body
    if has_action and has_perms and body["Permissions"] not in (None, []):
        raise IntentionProblem("Permissions", "give Action or Permissions, not both")
    out: dict[str, Any] = {
        "SourceNS": names["Source"].namespace,
        "SourceName": names["Source"].service,
        "DestinationNS": names["Destination"].namespace,
        "DestinationName": names["Destination"].service,
    }
    if has_action:
        if body["Action"] not in ACTIONS:
            raise IntentionProblem("Action", f"{body['Action']!r} is not 'allow' or 'deny'")
        out["Action"] = body["Action"]
    elif has_perms and body["Permissions"] not in (None, []):
        out["Permissions"] = _permissions(body["Permissions"])
    else:
        raise IntentionProblem("Action", "required: 'allow' or 'deny' (or L7 Permissions)")
    out["Description"] = _string(body.get("Description", ""), "Description", limit=MAX_DESCRIPTION)
    meta = body.get("Meta") or {}
    if not isinstance(meta, dict) or len(meta) > MAX_META:
        raise IntentionProblem("Meta", f"an object of at most {MAX_META} string values")
    for k, v in meta.items():
        _string(k, "Meta", limit=128)
        _string(v, f"Meta.{k}", limit=512)
    out["Meta"] = dict(meta)
    return out


@dataclass(frozen=True, slots=True)
class Intention:
    """One stored intention (the stored document plus its etcd revisions)."""

    id: str
    source: Name
    destination: Name
    doc: Mapping[str, Any]
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], create: int = 0, modify: int = 0) -> Intention:
        return cls(
            id=str(doc["ID"]),
            source=Name(doc["SourceNS"], doc["SourceName"]),
            destination=Name(doc["DestinationNS"], doc["DestinationName"]),
            doc=doc,
            create_index=create,
            modify_index=modify,
        )

    @property
    def precedence(self) -> int:
        return precedence(self.source, self.destination)

    @property
    def action(self) -> str:
        """`allow`/`deny`, or `""` for an L7 intention (its permissions decide)."""
        return str(self.doc.get("Action", ""))

    def view(self) -> dict[str, Any]:
        """Consul's JSON shape."""
        out: dict[str, Any] = {
            "ID": self.id,
            "Description": self.doc.get("Description", ""),
            "SourceNS": self.source.namespace,
            "SourceName": self.source.service,
            "DestinationNS": self.destination.namespace,
            "DestinationName": self.destination.service,
            "SourceType": "consul",
            "Action": self.action,
            "Meta": dict(self.doc.get("Meta") or {}),
            "Precedence": self.precedence,
            "CreatedAt": self.doc.get("CreatedAt", ""),
            "UpdatedAt": self.doc.get("UpdatedAt", ""),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        if "Permissions" in self.doc:
            out["Permissions"] = self.doc["Permissions"]
        return out


def evaluation_order(intentions: Iterable[Intention]) -> list[Intention]:
    """Highest precedence first; ties (which cannot both match one pair) by names, stably."""
    return sorted(
        intentions,
        key=lambda i: (
            -i.precedence,
            i.source.namespace,
            i.source.service,
            i.destination.namespace,
            i.destination.service,
        ),
    )


def match(intentions: Iterable[Intention], by: str, name: Name) -> list[Intention]:
    """The intentions that apply to `name` as a source (`by="source"`) or destination."""
    picked = [
        i
        for i in intentions
        if (i.source if by == "source" else i.destination).matches(name.namespace, name.service)
    ]
    return evaluation_order(picked)


def deciding(intentions: Iterable[Intention], source: Name, destination: Name) -> Intention | None:
    """The one intention that governs source → destination, or None (the default applies)."""
    for i in evaluation_order(intentions):
        if i.source.matches(source.namespace, source.service) and i.destination.matches(
            destination.namespace, destination.service
        ):
            return i
    return None


def check(
    intentions: Iterable[Intention], source: Name, destination: Name, *, default_allow: bool
) -> bool:
    """Consul's `/v1/connect/intentions/check`: would a connection be allowed? An L7 intention
    answers False: a connection check cannot know the requests that will be sent."""
    found = deciding(intentions, source, destination)
    if found is None:
        return default_allow
    return found.action == "allow"
