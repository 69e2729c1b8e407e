"""The CA's HTTP API: `/v1/ca/...` and Consul's `/v1/agent/connect/ca/roots`.

Handlers take the `CAExtension` (the CA and the registry context) and the request; a `CAError`
becomes its HTTP status (`CAHTTPError`), an unexpected one stays a 500.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import ca
from ca import CAError, ImportedCA, KeyType, ReadOnly, SpiffeId

from ._ca_api import CAExtension, CAHTTPError
from ._context import consul_response
from ._decode import F, decode
from ._endpoints import Area, Body, Handler, Reply, json_reply, ref
from ._errors import Forbidden, InvalidInput
from ._mirror import CA as CA_TOPIC
from .consul._schemas import BLOCKING
from .web import Request, Response

log = logging.getLogger("weft.ca")

_KEY_TYPES = {
    "ec-p256": KeyType.EC_P256,
    "rsa-2048": KeyType.RSA_2048,
    "rsa-3072": KeyType.RSA_3072,
}

INIT_SHAPE = {
    "trust_domain": F("str"),
    "key_type": F("str"),
    "keep_root_key": F("bool"),
    "root_cert": F("str"),
    "intermediate_cert": F("str"),
    "intermediate_key": F("str"),
}
ROTATE_SHAPE = {
    "root_key": F("str"),
    "key_type": F("str"),
    "keep_root_key": F("bool"),
    "root_cert": F("str"),
    "intermediate_cert": F("str"),
    "intermediate_key": F("str"),
}
SIGN_SHAPE = {
    "csr": F("str"),
    "service": F("str"),
    "namespace": F("str"),
    "lifetime": F("duration"),
}
SERVER_CERT_SHAPE = {
    "csr": F("str"),
    "dns_names": F("strlist"),
    "ip_addresses": F("strlist"),
    "lifetime": F("duration"),
}


def _key_type(value: str | None) -> KeyType | None:
    if value is None:
        return None
    if value not in _KEY_TYPES:
        raise InvalidInput(
            f"key_type: {value!r} is not one of {', '.join(_KEY_TYPES)}", field="key_type"
        )
    return _KEY_TYPES[value]


def _imported(data: dict[str, Any]) -> ImportedCA | None:
    parts = [data.get(k) for k in ("root_cert", "intermediate_cert", "intermediate_key")]
    if not any(parts):
        return None
    if not all(parts):
        raise InvalidInput(
            "to bring your own CA give root_cert, intermediate_cert and intermediate_key together",
            field="intermediate_key",
        )
    return ImportedCA(*parts)  # type: ignore[arg-type]


def _issued(cert: ca.IssuedCertificate, bundle: ca.TrustBundle) -> dict[str, Any]:
    return {
        "certificate_pem": cert.certificate_pem,
        "chain_pem": list(cert.chain_pem),
        "full_chain_pem": cert.full_chain_pem,
        "serial": cert.serial_hex,
        "not_before": ca.format_time(cert.not_before),
        "not_after": ca.format_time(cert.not_after),
        "spiffe_id": cert.identity.uri if cert.identity else None,
        "root_id": cert.root_id,
        "bundle_pem": bundle.pem(),
    }


def _closed(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


_STR = {"type": "string"}
_TIME = {"type": "string", "description": "RFC 3339"}
_PEMS = {"type": "array", "items": _STR}
_MAYBE = {"type": ["string", "null"]}
_ROOT = _closed(
    {
        "id": _STR,
        "name": _STR,
        "active": {"type": "boolean"},
        "certificate_pem": _STR,
        "intermediates_pem": _PEMS,
        "not_before": _TIME,
        "not_after": _TIME,
        "fingerprint_sha256": _STR,
        "drop_after": {"type": ["string", "null"], "description": "RFC 3339"},
    }
)
_CONSUL_ROOT = _closed(
    {
        "ID": _STR,
        "Name": _STR,
        "SerialNumber": {"type": "integer", "minimum": 0},
        "SigningKeyID": _STR,
        "ExternalTrustDomain": _STR,
        "NotBefore": _TIME,
        "NotAfter": _TIME,
        "RootCert": _STR,
        "IntermediateCerts": _PEMS,
        "Active": {"type": "boolean"},
        "PrivateKeyType": _STR,
        "PrivateKeyBits": {"type": "integer"},
    }
)

SCHEMAS: dict[str, Any] = {
    "TrustBundle": _closed(
        {
            "trust_domain": _STR,
            "active_root_id": _STR,
            "bundle_pem": _STR,
            "roots": {"type": "array", "items": _ROOT},
        }
    ),
    "ConsulCARoots": _closed(
        {
            "ActiveRootID": _STR,
            "TrustDomain": _STR,
            "Roots": {"type": "array", "items": _CONSUL_ROOT},
        }
    ),
    "CAStatus": _closed(
        {
            "trust_domain": _STR,
            "phase": _STR,
            "version": {"type": "integer"},
            "origin": _STR,
            "root_key_offline": {"type": "boolean"},
            "intermediate_not_after": _TIME,
            "issued_until": _TIME,
            "next_change": {"type": ["string", "null"], "description": "RFC 3339"},
            "leaf_ttl_seconds": {"type": "number"},
            "bundle": {"$ref": "#/components/schemas/TrustBundle"},
        }
    ),
    "IssuedCertificate": _closed(
        {
            "certificate_pem": _STR,
            "chain_pem": _PEMS,
            "full_chain_pem": _STR,
            "serial": _STR,
            "not_before": _TIME,
            "not_after": _TIME,
            "spiffe_id": _MAYBE,
            "root_id": _STR,
            "bundle_pem": _STR,
        }
    ),
    "CAInit": {"type": "object"},
    "CARotate": {"type": "object"},
    "CSRSign": {"type": "object"},
    "ServerCertificateRequest": {"type": "object"},
    "CAInitResult": _closed(
        {"bundle": {"$ref": "#/components/schemas/TrustBundle"}, "root_key_pem": _MAYBE}
    ),
    "CARotateResult": _closed(
        {
            "bundle": {"$ref": "#/components/schemas/TrustBundle"},
            "previous_root_id": _STR,
            "previous_root_drop_after": _MAYBE,
            "root_key_pem": _MAYBE,
        }
    ),
    "ConsulConnectAuthorize": {
        "type": "object",
        "required": ["Target", "ClientCertURI"],
        "properties": {
            "Target": {"type": "string"},
            "ClientCertURI": {"type": "string"},
            "ClientCertSerial": {"type": "string"},
        },
    },
    "ConsulConnectAuthorized": {
        "type": "object",
        "properties": {"Authorized": {"type": "boolean"}, "Reason": {"type": "string"}},
    },
    "ConsulLeaf": {"type": "object"},
}

AREA: Area[CAExtension] = Area("ca", "ca", SCHEMAS)
CONSUL_AREA: Area[CAExtension] = Area("consul", "consul-connect", SCHEMAS)
AREAS = (AREA, CONSUL_AREA)
route = AREA.route


def _ca_errors(handler: Handler[CAExtension]) -> Handler[CAExtension]:
    @functools.wraps(handler)
    async def translated(ext: CAExtension, request: Request) -> Response:
        try:
            return await handler(ext, request)
        except CAError as exc:
            error = CAHTTPError(exc)
            if error.status == 500:
                raise
            raise error from exc

    return translated


@route(
    "GET",
    "/v1/ca/roots",
    summary="The trust bundle (open: a joining host checks it by fingerprint)",
    # Open: the trust bundle is public, and a joining host fetches it before it has a token
    # (it checks the root's fingerprint, like kubeadm's CA cert hash).
    auth="open",
    errors=(400, 503),
    query=BLOCKING,
    ok=json_reply("The trust bundle", ref("TrustBundle"), headers=("X-Consul-Index",)),
)
@_ca_errors
async def roots(ext: CAExtension, request: Request) -> Response:
    ctx = ext.context
    index = await ctx.block(request, lambda: ctx.mirror.index(CA_TOPIC), (CA_TOPIC,))
    bundle = ext.active_authority().bundle()
    return Response.json(bundle.to_json(), headers=[("X-Consul-Index", str(index))])


@CONSUL_AREA.route(
    "GET",
    "/v1/agent/connect/ca/roots",
    summary="The trust bundle in Consul's shape",
    auth="open",
    errors=(400, 503),
    query=BLOCKING,
    ok=Reply(
        "The roots",
        {"application/json": ref("ConsulCARoots")},
        ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact"),
    ),
)
@_ca_errors
async def consul_roots(ext: CAExtension, request: Request) -> Response:
    ctx = ext.context
    index = await ctx.block(request, lambda: ctx.mirror.index(CA_TOPIC), (CA_TOPIC,))
    body = json.dumps(ext.active_authority().bundle().to_consul()).encode()
    return consul_response(body, index)


@route(
    "GET",
    "/v1/ca/status",
    summary="The CA's phase, lifetimes and trust bundle",
    auth="read",
    errors=(503,),
    ok=json_reply("The CA's status", ref("CAStatus")),
)
@_ca_errors
async def status(ext: CAExtension, request: Request) -> Response:
    ext.context.reader(request)
    authority = ext.active_authority()
    if not authority.initialised:
        await authority.refresh()
    s = authority.status()
    return Response.json(
        {
            "trust_domain": s.trust_domain,
            "phase": str(s.phase.value),
            "version": s.version,
            "origin": s.origin,
            "root_key_offline": s.root_key_offline,
            "intermediate_not_after": ca.format_time(s.intermediate_not_after),
            "issued_until": ca.format_time(s.issued_until),
            "next_change": ca.format_time(s.next_change) if s.next_change else None,
            "leaf_ttl_seconds": ext.lifetimes.default.total_seconds(),
            "bundle": s.bundle.to_json(),
        }
    )


@route(
    "POST",
    "/v1/ca/init",
    summary="Initialise the CA (operator): a new root, or bring your own",
    errors=(409, 503),
    body=Body(ref("CAInit")),
    ok=json_reply("The bundle (and the root key if it is not kept)", ref("CAInitResult")),
)
@_ca_errors
async def init(ext: CAExtension, request: Request) -> Response:
    ctx = ext.context
    ctx.authorizer.operator(ctx.token(request), "initialising the CA")
    data = decode(request.json(), INIT_SHAPE)
    if not data.get("trust_domain"):
        raise InvalidInput("trust_domain: is required", field="trust_domain")
    authority = ext.active_authority()
    imported = _imported(data)
    if imported is not None:
        done = await authority.import_ca(data["trust_domain"], imported)
    else:
        done = await authority.initialise(
            data["trust_domain"],
            root_key_type=_key_type(data.get("key_type")) or KeyType.EC_P256,
            keep_root_key=data.get("keep_root_key", True),
        )
    log.info(
        "CA initialised",
        extra={"kv": {"trust_domain": data["trust_domain"], "imported": imported is not None}},
    )
    return Response.json(
        {
            "bundle": done.bundle.to_json(),
            "root_key_pem": done.root_key_pem.decode() if done.root_key_pem else None,
        }
    )


@route(
    "POST",
    "/v1/ca/rotate",
    summary="Rotate to a new root (operator); the old one stays trusted for a while",
    errors=(409, 503),
    body=Body(ref("CARotate"), required=False),
    ok=json_reply("The new bundle", ref("CARotateResult")),
)
@_ca_errors
async def rotate(ext: CAExtension, request: Request) -> Response:
    ctx = ext.context
    ctx.authorizer.operator(ctx.token(request), "rotating the CA")
    data = decode(request.json() if request.body else {}, ROTATE_SHAPE)
    done = await ext.active_authority().rotate(
        root_key_pem=data.get("root_key"),
        root_key_type=_key_type(data.get("key_type")),
        keep_root_key=data.get("keep_root_key"),
        replacement=_imported(data),
    )
    log.info(
        "CA rotated",
        extra={
            "kv": {"previous_root": done.previous_root_id, "active_root": done.bundle.active.id}
        },
    )
    return Response.json(
        {
            "bundle": done.bundle.to_json(),
            "previous_root_id": done.previous_root_id,
            "previous_root_drop_after": (
                ca.format_time(done.previous_root_drop_after)
                if done.previous_root_drop_after
                else None
            ),
            "root_key_pem": done.root_key_pem.decode() if done.root_key_pem else None,
        }
    )


@route(
    "POST",
    "/v1/ca/sign",
    summary="Sign a workload CSR for a service (an agent only for its node's services)",
    errors=(409, 429, 503),
    body=Body(ref("CSRSign")),
    ok=json_reply("The certificate and its chain", ref("IssuedCertificate")),
)
@_ca_errors
async def sign(ext: CAExtension, request: Request) -> Response:
    token = ext.context.token(request)
    caller = ext.caller(token)
    if isinstance(caller, ReadOnly):
        raise Forbidden(
            f"a {token.role if token else 'missing'} token may not have certificates signed"
        )
    data = decode(request.json(), SIGN_SHAPE)
    for required in ("csr", "service"):
        if not data.get(required):
            raise InvalidInput(f"{required}: is required", field=required)
    ext.context.authorizer.service(token, data["service"], what="have a certificate for")
    authority = ext.active_authority()
    try:
        ext.limiter.acquire(token.accessor if token else "")
    except ca.RateLimited as exc:
        raise CAHTTPError(exc) from exc
    identity = SpiffeId(
        authority.bundle().trust_domain, data.get("namespace", "default"), data["service"]
    )
    lifetime = timedelta(seconds=data["lifetime"]) if "lifetime" in data else None
    cert = await authority.sign(data["csr"], identity, caller, lifetime=lifetime)
    return Response.json(_issued(cert, authority.bundle()))


@route(
    "POST",
    "/v1/ca/server-certificate",
    summary="Issue a TLS server certificate for `weft server` (operator)",
    errors=(409, 503),
    body=Body(ref("ServerCertificateRequest")),
    ok=json_reply("The certificate and its chain", ref("IssuedCertificate")),
)
@_ca_errors
async def server_certificate(ext: CAExtension, request: Request) -> Response:
    ctx = ext.context
    ctx.authorizer.operator(ctx.token(request), "issuing server certificates")
    data = decode(request.json(), SERVER_CERT_SHAPE)
    if not data.get("csr") or not data.get("dns_names"):
        raise InvalidInput("csr and dns_names are required", field="csr")
    try:
        csr = x509.load_pem_x509_csr(data["csr"].encode())
        valid = csr.is_signature_valid
    except ValueError as exc:
        raise InvalidInput(
            f"csr: not a PEM certificate signing request ({exc})", field="csr"
        ) from None
    if not valid:
        raise InvalidInput("csr: its signature does not verify", field="csr")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidInput("csr: the key must be EC P-256 or RSA >= 2048", field="csr")
    lifetime = timedelta(seconds=data["lifetime"]) if "lifetime" in data else None
    authority = ext.active_authority()
    cert = await authority.issue_server_certificate(
        key, data["dns_names"], data.get("ip_addresses", []), lifetime=lifetime
    )
    return Response.json(_issued(cert, authority.bundle()))
