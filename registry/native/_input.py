"""Native registration bodies → a `Registration`: defaults from the token, checks, leases."""

from __future__ import annotations

from typing import Any

from ca import SpiffeId

from .._acl import Role, Token
from .._catalog import Registration
from .._context import Context
from .._decode import F
from .._errors import Forbidden, InvalidInput, NotFound
from .._model import Check, Instance, Weights
from .._validate import (
    CHECK_SHAPE,
    address,
    build_check,
    identity,
    instance_id,
    kind,
    meta,
    namespace,
    node_name,
    port,
    protocol,
    service_name,
    source,
    tags,
    weights,
)
from ..web import Request

INSTANCE_SHAPE: dict[str, F] = {
    "service": F("str"),
    "id": F("str"),
    "node": F("str"),
    "namespace": F("str"),
    "address": F("str"),
    "node_address": F("str"),
    "port": F("int"),
    "protocol": F("str"),
    "tags": F("strlist"),
    "meta": F("strmap"),
    "weights": F("obj", {"passing": F("int"), "warning": F("int")}),
    "sidecar_port": F("int"),
    "identity": F("str"),
    "source": F("str"),
    "kind": F("str"),
    "checks": F("objlist", CHECK_SHAPE),
    "lease": F("str"),
}

REF_SHAPE: dict[str, F] = {"service": F("str"), "node": F("str"), "id": F("str")}
BATCH_SHAPE: dict[str, F] = {
    "upserts": F("objlist", INSTANCE_SHAPE),
    "deletes": F("objlist", REF_SHAPE),
}
MAX_BATCH = 5000


def parse_lease(raw: str, field: str = "lease") -> int:
    try:
        value = int(raw, 16)
        if value <= 0:
            raise ValueError
        return value
    except ValueError:
        raise InvalidInput(
            f"{field}: {raw!r} is not a lease ID (hex, as returned by POST /v1/registry/leases)",
            field=field,
        ) from None


def derived_identity(ctx: Context, ns: str, service: str, given: str, field: str) -> str:
    """The SPIFFE ID an instance of `service` in `ns` has: never the client's to choose.

    A client may send it (older agents and adapters do) but only if it is exactly this one;
    anything else is how one host would claim another service's traffic.
    """
    ns = namespace(ns, "namespace")
    trust_domain = ctx.trust_domain()
    if trust_domain is not None:
        derived = SpiffeId(trust_domain, ns, service).uri
        if given and given != derived:
            raise InvalidInput(
                f"{field}: {given!r} is not this instance's identity; it is derived from the "
                f"trust domain, namespace and service: {derived} (leave `identity` out)",
                field=field,
            )
        return derived
    # No CA on this server: the trust domain cannot be checked, the rest still must match.
    identity(given, field)
    if given:
        parsed = SpiffeId.parse(given)
        if (parsed.namespace, parsed.service) != (ns, service):
            raise InvalidInput(
                f"{field}: {given!r} names another service; an instance of {service!r} in "
                f"namespace {ns!r} is .../ns/{ns}/svc/{service} (leave `identity` out)",
                field=field,
            )
    return given


def registration_from_native(
    data: dict[str, Any], ctx: Context, token: Token | None, request: Request, *, path: str = ""
) -> Registration:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    for required in ("service", "port"):
        if required not in data:
            raise InvalidInput(f"{at(required)}: is required", field=at(required))
    name = service_name(data["service"], at("service"))
    default_node = (
        token.node if token is not None and token.role is Role.AGENT else (ctx.options.node_name)
    )
    node = node_name(data.get("node", default_node), at("node"))
    iid = instance_id(data.get("id", name), at("id"))
    if token is not None and token.role is Role.ADAPTER:
        default_source = token.source
    elif token is not None and token.role is Role.AGENT:
        default_source = "agent"
    else:
        default_source = "api"
    # Who owns a check's status: the host's agent, an adapter (which reports the status of its
    # source, e.g. Kubernetes readiness, and resends it on every change), or the server.
    if token is not None and token.role is Role.AGENT:
        runner = "agent"
    elif token is not None and token.role is Role.ADAPTER:
        runner = "adapter"
    else:
        runner = "server"
    passing, warning = weights(data.get("weights", {}), at("weights"))
    inst = Instance(
        service=name,
        id=iid,
        node=node,
        namespace=namespace(data.get("namespace", "default"), at("namespace")),
        address=address(data.get("address", ""), at("address")),
        node_address=address(data.get("node_address", request.peer), at("node_address")),
        port=port(data["port"], at("port")),
        protocol=protocol(data.get("protocol", "http"), at("protocol")),
        tags=tags(data.get("tags", []), at("tags")),
        meta=meta(data.get("meta", {}), at("meta")),
        weights=Weights(passing, warning),
        sidecar_port=port(data.get("sidecar_port", 0), at("sidecar_port"), allow_zero=True),
        identity=derived_identity(
            ctx, data.get("namespace", "default"), name, data.get("identity", ""), at("identity")
        )
        if data.get("sidecar_port") or data.get("identity")
        else "",
        source=source(data.get("source", default_source), at("source")),
        kind=kind(data.get("kind", ""), at("kind")),
    )
    checks: list[Check] = []
    seen: set[str] = set()
    specs = data.get("checks", [])
    for i, spec in enumerate(specs):
        where = f"{at('checks')}[{i}]"
        check_id = spec.get("id") or (
            f"service:{iid}" if len(specs) == 1 else f"service:{iid}:{i + 1}"
        )
        if check_id in seen:
            raise InvalidInput(f"{where}.id: {check_id!r} is used twice", field=f"{where}.id")
        seen.add(check_id)
        checks.append(
            build_check(
                spec,
                field=where,
                check_id=check_id,
                node=node,
                service=name,
                instance=iid,
                runner=runner,
                rules=ctx.options.check_rules,
            )
        )
    lease = parse_lease(data["lease"], at("lease")) if data.get("lease") else 0
    if lease:
        owner = ctx.catalog.lease_owner(lease)
        if owner is None:
            raise NotFound(
                f"{at('lease')}: lease {data['lease']} does not exist (expired or "
                "revoked); grant a new one",
                field=at("lease"),
            )
        if (
            token is not None
            and token.role is not Role.OPERATOR
            and owner.get("owner") != (token.accessor)
        ):
            raise Forbidden(f"{at('lease')}: lease {data['lease']} belongs to another token")
    return Registration(instance=inst, checks=tuple(checks), lease=lease)
