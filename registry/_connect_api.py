"""Consul's agent Connect endpoints on `weft server`: authorize a connection, issue a leaf.

    POST /v1/agent/connect/authorize        {Target, ClientCertURI, ClientCertSerial}
                                            -> {Authorized, Reason}   (decided by _connect_authz)
    GET  /v1/agent/connect/ca/leaf/<service> -> {SerialNumber, CertPEM, PrivateKeyPEM, ...}

Both act for a service the way registering it does: an agent token only for services in its
service set (and, for a leaf, registered on its node), an adapter token for its source's.

Departure: Consul's leaf endpoint is answered by the host's own agent, which makes the key. A
Consul client asking `weft server` gets a key made by the server and sent to it over the API's
TLS; Weft's own agent never uses this route (it keeps its key and sends a CSR to /v1/ca/sign).
"""

from __future__ import annotations

import json
from typing import Any

import ca
from ca import InvalidIdentity, ReadOnly, SpiffeId, make_key_and_csr

from ._ca_api import CAExtension
from ._ca_routes import SCHEMAS, _ca_errors
from ._connect_authz import decide
from ._context import consul_response
from ._decode import F, decode
from ._endpoints import Area, Body, Param, Reply, ref
from ._errors import Forbidden, InvalidInput
from ._mirror import CA as CA_TOPIC
from ._validate import namespace as check_namespace
from ._validate import service_name
from .web import Request, Response

AREA: Area[CAExtension] = Area("consul", "consul-connect", SCHEMAS)

AUTHORIZE_SHAPE = {
    "Target": F("str"),
    "ClientCertURI": F("str"),
    "ClientCertSerial": F("str"),
    "Namespace": F("str"),
    "Partition": F("any", ignored=True),
}
_CONSUL = ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact")


def _may_act_for(ext: CAExtension, request: Request, service: str, what: str) -> None:
    ctx = ext.context
    token = ctx.token(request)
    if token is None:
        raise Forbidden(f"{what} service {service!r} needs a token; none was sent")
    if isinstance(ext.caller(token), ReadOnly):
        raise Forbidden(f"a {token.role} token may not {what} service {service!r}")
    ctx.authorizer.service(token, service, what=what)


def _colon_hex(serial: int) -> str:
    """Consul writes serials as colon-separated hex bytes (`3a:0f:...`)."""
    digits = format(serial, "x")
    digits = "0" * (len(digits) % 2) + digits
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


async def authorize(ext: CAExtension, request: Request) -> Response:
    data = decode(request.json(), AUTHORIZE_SHAPE, fold_case=True)
    for required in ("Target", "ClientCertURI"):
        if not data.get(required):
            raise InvalidInput(f"{required}: is required", field=required)
    target = service_name(data["Target"], "Target")
    ns = check_namespace(data.get("Namespace") or "default", "Namespace")
    _may_act_for(ext, request, target, "authorize connections to")
    try:
        source = SpiffeId.parse(data["ClientCertURI"])
    except InvalidIdentity as exc:
        raise InvalidInput(
            f"ClientCertURI: not a service identity of this mesh: {exc}", field="ClientCertURI"
        ) from None
    decision = decide(ext.context, source, target, ns)
    body = {"Authorized": decision.authorized, "Reason": decision.reason}
    return consul_response(json.dumps(body).encode(), ext.context.mirror.index(CA_TOPIC))


# Consul documents POST; py-consul sends PUT. Both are answered.
for _method in ("POST", "PUT"):
    AREA.route(
        _method,
        "/v1/agent/connect/authorize",
        summary="May a client certificate's service connect to Target? (Consul's shape)",
        errors=(400,),
        body=Body(ref("ConsulConnectAuthorize")),
        ok=Reply("The decision", {"application/json": ref("ConsulConnectAuthorized")}, _CONSUL),
    )(authorize)


@AREA.route(
    "GET",
    "/v1/agent/connect/ca/leaf/{service}",
    summary="A leaf certificate and its key for a service (Consul's shape)",
    errors=(400, 429, 503),
    path_params={"service": Param("service", description="The service's name")},
    query=(Param("ns", description="The service's namespace (default: default)"),),
    ok=Reply("The leaf", {"application/json": ref("ConsulLeaf")}, _CONSUL),
)
@_ca_errors
async def leaf(ext: CAExtension, request: Request) -> Response:
    service = service_name(request.params["service"], "service")
    ns = check_namespace(request.arg("ns") or "default", "ns")
    _may_act_for(ext, request, service, "have a certificate for")
    token = ext.context.token(request)
    authority = ext.active_authority()
    ext.limiter.acquire(token.accessor if token else "")
    identity = SpiffeId(authority.bundle().trust_domain, ns, service)
    made = make_key_and_csr(identity)
    cert = await authority.sign(made.csr_pem, identity, ext.caller(token))
    body: dict[str, Any] = {
        "SerialNumber": _colon_hex(cert.serial_number),
        "CertPEM": cert.full_chain_pem,
        "PrivateKeyPEM": made.key_pem.decode(),
        "Service": service,
        "ServiceURI": identity.uri,
        "ValidAfter": ca.format_time(cert.not_before),
        "ValidBefore": ca.format_time(cert.not_after),
        "CreateIndex": ext.context.mirror.index(CA_TOPIC),
        "ModifyIndex": ext.context.mirror.index(CA_TOPIC),
    }
    return consul_response(json.dumps(body).encode(), ext.context.mirror.index(CA_TOPIC))
