"""Service definitions: `/etc/weft/services.d/*.toml`, one service per file.

    name = "web"                 # a DNS label; the registry service name
    port = 8080                  # where the app listens on this host
    protocol = "http"            # http (HTTP/1.1), http2 or grpc (h2c), or tcp
    tags = ["v1"]
    meta = { team = "storefront" }

    [sidecar]                    # give the service a Weft proxy (mTLS in, balancing out)
    port = 21000                 # the mTLS port other hosts connect to
    admin_port = 15000           # optional: /ready /metrics /config (default: any free port)
    forward_proxy_port = 15001   # optional: an HTTP_PROXY listener for http://<service>/
    authorization = { default = "deny", allow = ["web", "shop/*"], deny = [] }

    [[upstreams]]                # services this one calls, through its sidecar
    service = "billing"
    local_port = 9191            # the app calls 127.0.0.1:9191

    [[checks]]
    http = "http://127.0.0.1:8080/health"
    interval = "10s"

An ingress gateway (`weft gateway`, run by its own unit) is declared with `kind =
"ingress-gateway"`, its public `port`, and no [sidecar]: the agent registers it, keeps its
certificate and publishes its snapshot (`/v1/agent/proxy/<id>/snapshot`), but does not run it.

Parsing is pure: text in, a ServiceDef out, or a DefinitionError naming the file, the field
and the rule. Whole-set rules (duplicate names, clashing ports) are checked by `check_set`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.validation import CHECK_SHAPE as NATIVE_CHECK_SHAPE
from registry.validation import (
    CheckRules,
    F,
    InvalidInput,
    address,
    build_check,
    decode,
    instance_id,
    meta,
    namespace,
    port,
    protocol,
    service_name,
    status,
    tags,
    weights,
)

from ._errors import DefinitionError

# The registry's check shape, less DeregisterCriticalServiceAfter: an agent's own services
# leave the catalog with its lease, and it would re-register them at the next sync anyway.
CHECK_SHAPE = {k: v for k, v in NATIVE_CHECK_SHAPE.items() if k != "deregister_critical_after"}
SHAPE = {
    "name": F("str"),
    "id": F("str"),
    "namespace": F("str"),
    "port": F("int"),
    "address": F("str"),
    "protocol": F("str"),
    "kind": F("str"),
    "tags": F("strlist"),
    "meta": F("strmap"),
    "weights": F("obj", {"passing": F("int"), "warning": F("int")}),
    "sidecar": F(
        "obj",
        {
            "port": F("int"),
            "admin_port": F("int"),
            "forward_proxy_port": F("int"),
            "authorization": F(
                "obj", {"default": F("str"), "allow": F("strlist"), "deny": F("strlist")}
            ),
        },
    ),
    "upstreams": F("objlist", {"service": F("str"), "namespace": F("str"), "local_port": F("int")}),
    "checks": F("objlist", CHECK_SHAPE),
}
CHECK_KINDS = ("ttl", "http", "tcp", "args")
INGRESS_GATEWAY = "ingress-gateway"
# The agent runs its checks at the intervals written (the server's minimums are for checks
# it runs itself); every other rule is the registry's, so a file the agent accepts is one
# the registry and the check runner accept too.
_AGENT_RULES = CheckRules(min_interval=0.0, min_deregister_critical_after=0.0)


@dataclass(frozen=True)
class CheckDef:
    id: str
    kind: str  # ttl http tcp exec
    spec: Mapping[str, Any]  # the native check shape the registry takes

    @property
    def interval(self) -> float:
        return float(self.spec.get("interval", 0.0))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeout", 10.0))


@dataclass(frozen=True)
class UpstreamDef:
    service: str
    local_port: int
    namespace: str = "default"


@dataclass(frozen=True)
class ServiceDef:
    file: str
    name: str
    id: str
    port: int
    namespace: str = "default"
    address: str = ""
    protocol: str = "http"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    weights: tuple[int, int] = (1, 1)
    sidecar_port: int = 0
    admin_port: int = 0
    forward_proxy_port: int = 0
    default_policy: str = "allow"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    upstreams: tuple[UpstreamDef, ...] = ()
    checks: tuple[CheckDef, ...] = ()
    kind: str = ""  # "" (a service) or "ingress-gateway" (`weft gateway`, docs/gateway.md)

    @property
    def gateway(self) -> bool:
        return self.kind == INGRESS_GATEWAY

    @property
    def proxied(self) -> bool:
        """The agent keeps a certificate and a snapshot for it (a sidecar or a gateway)."""
        return bool(self.sidecar_port) or self.gateway

    def bound_ports(self) -> list[tuple[str, int]]:
        """(field, port) of every port the mesh binds for this service on the host."""
        out = []
        if self.sidecar_port:
            out.append(("sidecar.port", self.sidecar_port))
        if self.admin_port:
            out.append(("sidecar.admin_port", self.admin_port))
        if self.forward_proxy_port:
            out.append(("sidecar.forward_proxy_port", self.forward_proxy_port))
        out += [(f"upstreams[{i}].local_port", u.local_port) for i, u in enumerate(self.upstreams)]
        return out


def parse(file: str, text: str) -> ServiceDef:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(file, "", f"not valid TOML: {exc}") from None
    try:
        return _build(file, decode(raw, SHAPE))
    except InvalidInput as exc:
        field_name = exc.field or ""
        message = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
        raise DefinitionError(file, field_name, message) from None


def _build(file: str, data: dict[str, Any]) -> ServiceDef:
    for required in ("name", "port"):
        if required not in data:
            raise DefinitionError(file, required, "is required")
    name = service_name(data["name"], "name")
    sid = instance_id(data.get("id", name), "id")
    ns = namespace(data.get("namespace", "default"), "namespace")
    sidecar = data.get("sidecar", {})
    upstreams = []
    for i, up in enumerate(data.get("upstreams", [])):
        where = f"upstreams[{i}]"
        for required in ("service", "local_port"):
            if required not in up:
                raise DefinitionError(file, f"{where}.{required}", "is required")
        upstreams.append(
            UpstreamDef(
                service=service_name(up["service"], f"{where}.service"),
                local_port=port(up["local_port"], f"{where}.local_port"),
                namespace=namespace(up.get("namespace", "default"), f"{where}.namespace"),
            )
        )
    service_kind = data.get("kind", "")
    if service_kind not in ("", INGRESS_GATEWAY):
        raise DefinitionError(
            file,
            "kind",
            f"{service_kind!r} is not a kind the agent runs (leave it out, or {INGRESS_GATEWAY!r})",
        )
    if service_kind and (sidecar or upstreams):
        raise DefinitionError(
            file,
            "sidecar" if sidecar else "upstreams",
            "an ingress gateway has no sidecar: `weft gateway` calls the services its Gateway "
            "and Routes name (docs/gateway.md)",
        )
    if upstreams and not sidecar:
        raise DefinitionError(
            file, "upstreams", "upstreams are reached through the sidecar: add a [sidecar] table"
        )
    checks = []
    for i, spec in enumerate(data.get("checks", [])):
        where = f"checks[{i}]"
        kinds = [k for k in CHECK_KINDS if spec.get(k)]
        if len(kinds) != 1:
            raise DefinitionError(
                file,
                where,
                "a check needs exactly one of ttl, http, tcp or args"
                + (
                    f" (got {', '.join(kinds)})"
                    if kinds
                    else f"; known fields: {', '.join(sorted(CHECK_SHAPE))}"
                ),
            )
        kind = "exec" if kinds[0] == "args" else kinds[0]
        if kind != "ttl" and not spec.get("interval"):
            raise DefinitionError(file, f"{where}.interval", f"{kind} checks need an interval")
        if "status" in spec:
            status(spec["status"], f"{where}.status")
        cid = spec.get("id") or (
            f"service:{sid}" if len(data["checks"]) == 1 else f"service:{sid}:{i + 1}"
        )
        instance_id(cid, f"{where}.id")
        build_check(
            spec,
            field=where,
            check_id=cid,
            node="",
            service=name,
            instance=sid,
            runner="agent",
            rules=_AGENT_RULES,
        )
        checks.append(CheckDef(cid, kind, {**spec, "id": cid}))
    passing, warning = weights(data.get("weights", {}), "weights")
    authz = sidecar.get("authorization", {})
    default_policy = authz.get("default", "allow")
    if default_policy not in ("allow", "deny"):
        raise DefinitionError(file, "sidecar.authorization.default", "must be allow or deny")
    return ServiceDef(
        file=file,
        name=name,
        id=sid,
        namespace=ns,
        port=port(data["port"], "port"),
        address=address(data.get("address", ""), "address"),
        protocol=protocol(data.get("protocol", "http"), "protocol"),
        tags=tags(data.get("tags", []), "tags"),
        meta=meta(data.get("meta", {}), "meta"),
        weights=(passing, warning),
        sidecar_port=port(sidecar["port"], "sidecar.port") if "port" in sidecar else 0,
        admin_port=port(sidecar["admin_port"], "sidecar.admin_port")
        if "admin_port" in sidecar
        else 0,
        forward_proxy_port=port(sidecar["forward_proxy_port"], "sidecar.forward_proxy_port")
        if "forward_proxy_port" in sidecar
        else 0,
        default_policy=default_policy,
        allow=tuple(authz.get("allow", ())),
        deny=tuple(authz.get("deny", ())),
        upstreams=tuple(upstreams),
        checks=tuple(checks),
        kind=service_kind,
    )


def check_set(defs: Sequence[ServiceDef]) -> None:
    """Rules across files: unique service IDs and check IDs, no port bound twice."""
    seen_ids: dict[str, ServiceDef] = {}
    seen_checks: dict[str, ServiceDef] = {}
    seen_ports: dict[int, tuple[ServiceDef, str]] = {}
    for d in defs:
        if d.id in seen_ids:
            raise DefinitionError(
                d.file,
                "name" if d.id == d.name else "id",
                f"{d.id!r} is already defined in {seen_ids[d.id].file}",
            )
        seen_ids[d.id] = d
        for check in d.checks:
            if check.id in seen_checks:
                raise DefinitionError(
                    d.file,
                    "checks",
                    f"check ID {check.id!r} is already used in {seen_checks[check.id].file}",
                )
            seen_checks[check.id] = d
        for where, number in d.bound_ports():
            if number in seen_ports:
                other, other_field = seen_ports[number]
                raise DefinitionError(
                    d.file, where, f"port {number} is also {other_field} in {other.file}"
                )
            seen_ports[number] = (d, where)


def ports_in_use(defs: Iterable[ServiceDef], is_free: Any, already_ours: set[int]) -> None:
    """Refuse a definition whose sidecar or upstream port something else already holds."""
    for d in defs:
        for where, number in d.bound_ports():
            if number not in already_ours and not is_free(number):
                raise DefinitionError(
                    d.file, where, f"port {number} is already in use on this host"
                )


def load_directory(directory: str) -> list[ServiceDef]:
    """Every `*.toml` in `directory`, checked one by one and as a set."""
    from pathlib import Path

    path = Path(directory)
    if not path.is_dir():
        raise DefinitionError(str(path), "", "is not a directory of service definitions")
    defs = []
    for file in sorted(path.glob("*.toml")):
        try:
            text = file.read_text()
        except OSError as exc:
            raise DefinitionError(str(file), "", f"cannot be read: {exc.strerror}") from None
        defs.append(parse(str(file), text))
    check_set(defs)
    return defs


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        # As the proxy binds: a port whose old connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
