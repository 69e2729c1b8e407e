"""The snapshot: one versioned JSON document that configures a proxy entirely. Pure.

`parse_snapshot` checks a document against `snapshot.schema.json` and then the rules a schema
cannot say (identities parse, names and ports are unique, backoffs are ordered), and returns
frozen objects with every default filled in. Any problem refuses the whole document: the
caller keeps the snapshot it had ("fail static"). The contract is documented in
docs/snapshot.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ca import SpiffeId

from ._accrual import AccrualPolicy
from ._authz import Rule, check_source
from ._errors import SnapshotError
from ._external import External, external_of
from ._intentions import Intentions
from ._intentions import build as build_intentions
from ._route_table import RouteTable, build_table
from ._schema import snapshot_validator

SCHEMA_V1 = "weft.proxy.snapshot/v1"
SCHEMA_V2 = "weft.proxy.snapshot/v2"
SCHEMA_V3 = "weft.proxy.snapshot/v3"
SCHEMA_V4 = "weft.proxy.snapshot/v4"
SCHEMA_ID = SCHEMA_V4
_V2_UPSTREAM_FIELDS = ("routes", "precedence", "retry_budget")
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})  # balanced per request, routed
H2_PROTOCOLS = frozenset({"http2", "grpc"})  # spoken in HTTP/2
_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: str
    key: str
    bundle: str


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    response: float = 30.0


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    max_connections: int = 1024
    idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Inbound:
    address: str
    port: int
    protocol: str
    app_address: str
    app_port: int
    timeouts: Timeouts
    pool: PoolPolicy


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    weight: int
    identity: SpiffeId | None  # None: an external service's address (no sidecar, no mTLS)
    subsets: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    protocol: str
    address: str
    port: int | None
    balancer: str
    endpoints: tuple[Endpoint, ...]
    timeouts: Timeouts
    pool: PoolPolicy
    accrual: AccrualPolicy
    table: RouteTable
    external: External | None = None  # v4: a service outside the mesh

    def subsets(self) -> set[str]:
        return {name for e in self.endpoints for name in e.subsets}


@dataclass(frozen=True, slots=True)
class Authorization:
    default_allow: bool
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Listen:
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    identity: SpiffeId
    tls: TlsFiles
    inbound: Inbound | None
    authorization: Authorization
    intentions: Intentions | None  # v3; None: the service's own authorization alone decides
    upstreams: tuple[Upstream, ...]
    forward_proxy: Listen | None
    outbound: str  # v4: allow-any | registry-only (the forward proxy's undeclared hosts)
    document: dict[str, Any]
    digest: str  # sha256 of the canonical JSON, to tell a changed document from a resent one

    def upstream(self, name: str) -> Upstream | None:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None

    def external_hosts(self) -> dict[str, list[Upstream]]:
        """Each external host and its upstreams (one per declared port), in document order."""
        out: dict[str, list[Upstream]] = {}
        for upstream in self.upstreams:
            if upstream.external is not None:
                for host in upstream.external.hosts:
                    out.setdefault(host, []).append(upstream)
        return out


def _timeouts(doc: dict[str, Any] | None) -> Timeouts:
    doc = doc or {}
    return Timeouts(
        connect=doc.get("connect_ms", 2000) / 1000.0,
        response=doc.get("response_ms", 30000) / 1000.0,
    )


def _pool(doc: dict[str, Any] | None) -> PoolPolicy:
    doc = doc or {}
    return PoolPolicy(
        max_connections=int(doc.get("max_connections", 1024)),
        idle_timeout=doc.get("idle_timeout_ms", 60000) / 1000.0,
    )


def _accrual(doc: dict[str, Any] | None, path: str, problems: list[str]) -> AccrualPolicy:
    doc = doc or {}
    policy = AccrualPolicy(
        max_failures=int(doc.get("consecutive_failures", 7)),
        backoff_min=doc.get("backoff_min_ms", 1000) / 1000.0,
        backoff_max=doc.get("backoff_max_ms", 60000) / 1000.0,
        jitter=float(doc.get("jitter", 0.5)),
    )
    if policy.backoff_min > policy.backoff_max:
        problems.append(f"{path}.backoff_min_ms: must not exceed backoff_max_ms")
    return policy


def _identity(text: str, path: str, problems: list[str]) -> SpiffeId | None:
    try:
        return SpiffeId.parse(text)
    except ValueError as exc:
        problems.append(f"{path}: {exc}")
        return None


def decode_document(raw: bytes | str) -> dict[str, Any]:
    """JSON text to a dict, or SnapshotError saying where the JSON broke."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise SnapshotError([f"document is larger than {MAX_DOCUMENT_BYTES} bytes"])
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError([f"not valid JSON: {exc}"]) from None
    if not isinstance(doc, dict):
        raise SnapshotError(["a snapshot must be a JSON object"])
    return doc


def parse_snapshot(raw: bytes | str | dict[str, Any]) -> Snapshot:
    """Validate a snapshot document and build its objects; SnapshotError lists every problem."""
    doc = raw if isinstance(raw, dict) else decode_document(raw)
    problems = snapshot_validator().errors(doc)
    if problems:
        raise SnapshotError(problems)

    own = _identity(doc["identity"], "identity", problems)
    if own is None:
        raise SnapshotError(problems)
    tls = TlsFiles(**doc["tls"])

    listeners: list[tuple[str, int, str]] = []

    def claim(address: str, port: int | None, path: str) -> None:
        # A wildcard address (0.0.0.0, ::) takes the port on every address.
        if not port:
            return
        for other_address, other_port, other in listeners:
            if other_port == port and (
                other_address == address or {address, other_address} & _WILDCARDS
            ):
                problems.append(f"{path}: port {port} on {address} is also used by {other}")
                break
        listeners.append((address, port, path))

    inbound = None
    if "inbound" in doc:
        d = doc["inbound"]
        inbound = Inbound(
            address=d.get("address", "0.0.0.0"),
            port=int(d["port"]),
            protocol=d.get("protocol", "http"),
            app_address=d["app"].get("address", "127.0.0.1"),
            app_port=int(d["app"]["port"]),
            timeouts=_timeouts(d.get("timeouts")),
            pool=_pool(d.get("pool")),
        )
        claim(inbound.address, inbound.port, "inbound.port")

    authz_doc = doc.get("authorization", {"default": "allow"})
    rules = []
    names: set[str] = set()
    for i, r in enumerate(authz_doc.get("rules", [])):
        name = r.get("name") or f"rule-{i}"
        if name in names:
            problems.append(f"authorization.rules[{i}].name: {name!r} is used twice")
        names.add(name)
        for j, source in enumerate(r["sources"]):
            try:
                check_source(source, own)
            except ValueError as exc:
                problems.append(f"authorization.rules[{i}].sources[{j}]: {exc}")
        rules.append(Rule(name=name, allow=r["action"] == "allow", sources=tuple(r["sources"])))
    authorization = Authorization(authz_doc["default"] == "allow", tuple(rules))

    intentions = None
    if "intentions" in doc:
        if doc["schema"] not in (SCHEMA_V3, SCHEMA_V4):
            problems.append(f"intentions: needs schema {SCHEMA_V3!r}")
        intentions = build_intentions(doc["intentions"], own, problems)

    upstreams = []
    seen: set[str] = set()
    for i, u in enumerate(doc.get("upstreams", [])):
        path = f"upstreams[{i}]"
        if u["name"] in seen:
            problems.append(f"{path}.name: upstream {u['name']!r} is defined twice")
        seen.add(u["name"])
        endpoints = []
        keys: set[str] = set()
        for j, e in enumerate(u["endpoints"]):
            sid = _identity(e["identity"], f"{path}.endpoints[{j}].identity", problems)
            if sid is None:
                continue
            ep = Endpoint(
                e["address"],
                int(e["port"]),
                int(e.get("weight", 1)),
                sid,
                frozenset(e.get("subsets", ())),
            )
            if ep.key in keys:
                problems.append(f"{path}.endpoints[{j}]: endpoint {ep.key} is listed twice")
            keys.add(ep.key)
            endpoints.append(ep)
        if doc["schema"] == SCHEMA_V1:
            for name in _V2_UPSTREAM_FIELDS:
                if name in u:
                    problems.append(f"{path}.{name}: needs schema {SCHEMA_V2!r}")
            if any("subsets" in e for e in u["endpoints"]):
                problems.append(f"{path}.endpoints: subsets need schema {SCHEMA_V2!r}")
        table = build_table(
            u["name"],
            u.get("routes"),
            precedence=u.get("precedence", "order"),
            budget=u.get("retry_budget"),
            path=f"{path}.",
            problems=problems,
        )
        if u["protocol"] == "tcp" and "routes" in u:
            problems.append(f"{path}.routes: an opaque TCP upstream has no HTTP routes")
        address = u.get("address", "127.0.0.1")
        port = int(u["port"]) if "port" in u else None
        claim(address, port, f"{path}.port")
        upstreams.append(
            Upstream(
                name=u["name"],
                protocol=u["protocol"],
                address=address,
                port=port,
                balancer=u.get("balancer", "p2c_ewma"),
                endpoints=tuple(endpoints),
                timeouts=_timeouts(u.get("timeouts")),
                pool=_pool(u.get("pool")),
                accrual=_accrual(u.get("failure_accrual"), f"{path}.failure_accrual", problems),
                table=table,
            )
        )
    if doc.get("external") or "outbound" in doc:
        if doc["schema"] != SCHEMA_V4:
            problems.append(f"external, outbound: need schema {SCHEMA_V4!r}")
        for i, e in enumerate(doc.get("external", [])):
            path = f"external[{i}]"
            if e["name"] in seen:
                problems.append(f"{path}.name: {e['name']!r} is also an upstream or external")
            seen.add(e["name"])
            upstreams.append(
                Upstream(
                    name=e["name"],
                    protocol="http" if e["protocol"] in ("http", "https") else "tcp",
                    address="",
                    port=None,  # reached through the forward proxy and routes only
                    balancer=e.get("balancer", "p2c_ewma"),
                    endpoints=tuple(
                        Endpoint(address, e["port"], 1, None) for address in e["addresses"]
                    ),
                    timeouts=_timeouts(e.get("timeouts")),
                    pool=_pool(e.get("pool")),
                    accrual=_accrual(e.get("failure_accrual"), f"{path}.failure_accrual", problems),
                    table=build_table(
                        e["name"],
                        e.get("routes"),
                        precedence=e.get("precedence", "order"),
                        budget=e.get("retry_budget"),
                        path=f"{path}.",
                        problems=problems,
                    ),
                    external=external_of(e, path, problems),
                )
            )
    by_name = {u.name: u for u in upstreams}
    for i, u in enumerate(upstreams):
        if u.table.implicit:
            continue
        for ref in sorted(u.table.backends(), key=lambda r: r.cluster_key):
            target = by_name.get(ref.upstream)
            if target is None:
                problems.append(
                    f"upstreams[{i}].routes: backend {ref.upstream!r} is not an upstream of this "
                    "snapshot"
                )
            elif target.protocol not in HTTP_PROTOCOLS or (
                target.external is not None and target.external.protocol not in ("http", "https")
            ):
                problems.append(f"upstreams[{i}].routes: backend {ref.upstream!r} is not HTTP")
            elif (target.protocol in H2_PROTOCOLS) != (u.protocol in H2_PROTOCOLS):
                problems.append(
                    f"upstreams[{i}].routes: backend {ref.upstream!r} speaks {target.protocol}, "
                    f"which {u.name!r} ({u.protocol}) cannot carry: both HTTP/1.1 or both HTTP/2"
                )

    forward = None
    if "forward_proxy" in doc:
        f = doc["forward_proxy"]
        forward = Listen(f.get("address", "127.0.0.1"), int(f.get("port", 15001)))
        claim(forward.address, forward.port, "forward_proxy.port")

    if problems:
        raise SnapshotError(problems)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return Snapshot(
        version=int(doc["version"]),
        identity=own,
        tls=tls,
        inbound=inbound,
        authorization=authorization,
        intentions=intentions,
        upstreams=tuple(upstreams),
        forward_proxy=forward,
        outbound=doc.get("outbound", "allow-any"),
        document=doc,
        digest=hashlib.sha256(canonical).hexdigest(),
    )
