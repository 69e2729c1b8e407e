"""The CA mounted on `weft server`: its state in etcd, its HTTP API, its timers.

`ca` is pure; this module gives it an etcd-backed `CAStore`, maps tokens to signing callers
(an agent may have certificates only for services registered on its node), rate-limits
signing, and answers `/v1/ca/...` and Consul's `/v1/agent/connect/ca/roots`.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import ca
from ca import (
    Adapter,
    CAError,
    CertificateAuthority,
    ImportedCA,
    KeyEncryptionKey,
    KeyType,
    LeafLifetimes,
    NodeAgent,
    Operator,
    RateLimiter,
    ReadOnly,
    ServiceRef,
    SpiffeId,
    Stored,
)

from ._acl import Role, Token
from ._backoff import Backoff
from ._context import Context, consul_response
from ._decode import F, decode
from ._errors import Forbidden, InvalidInput, RegistryError
from ._keys import Keys
from ._mirror import CA as CA_TOPIC
from .etcd import Compare, EtcdClient, EtcdError, Put
from .web import Request, Response, Router

log = logging.getLogger("weft.ca")

# HTTP statuses of the CA's errors (see ca/_errors.py).
_STATUS = {
    ca.InvalidCSR: 400,
    ca.IdentityMismatch: 400,
    ca.UnsupportedKey: 400,
    ca.InvalidLifetime: 400,
    ca.InvalidIdentity: 400,
    ca.InvalidCAMaterial: 400,
    ca.RootKeyRequired: 400,
    ca.SigningDenied: 403,
    ca.RateLimited: 429,
    ca.NotInitialised: 503,
    ca.AlreadyInitialised: 409,
    ca.StateConflict: 409,
}


class CAHTTPError(RegistryError):
    def __init__(self, exc: CAError) -> None:
        super().__init__(str(exc))
        self.status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 500)
        self.retry_after = getattr(exc, "retry_after", None)


class EtcdCAStore:
    """`ca.CAStore` on one etcd key: the version is its mod_revision, saves compare it."""

    def __init__(self, etcd: EtcdClient, keys: Keys) -> None:
        self.etcd = etcd
        self.key = keys.ca("state")

    async def load(self) -> Stored | None:
        kv = await self.etcd.get(self.key)
        return None if kv is None else Stored(kv.value, kv.mod_revision)

    async def save(self, data: bytes, expected_version: int | None) -> int:
        guard = (
            Compare("version", self.key, "=", 0)
            if expected_version is None
            else Compare("mod", self.key, "=", expected_version)
        )
        result = await self.etcd.txn([guard], [Put(self.key, data)])
        if not result.succeeded:
            raise ca.StateConflict(
                f"the CA state changed since version {expected_version} was read"
            )
        return result.revision


def read_kek(kek_file: str, kek_text: str) -> KeyEncryptionKey | None:
    """The key-encryption key from the server's settings (a file, or the env variable)."""
    if kek_text:
        return KeyEncryptionKey.from_text(kek_text, source="WEFT_SERVER_CA_KEK")
    if kek_file:
        try:
            with open(kek_file, "rb") as f:
                return KeyEncryptionKey.from_text(f.read(), source=kek_file)
        except OSError as exc:
            raise ca.InvalidKeyEncryptionKey(
                f"cannot read the key-encryption key file {kek_file}: {exc.strerror}"
            ) from exc
    return None


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


class CAExtension:
    """What `weft server` mounts for the CA."""

    def __init__(
        self,
        kek: KeyEncryptionKey | None,
        *,
        leaf_ttl: float = 86400.0,
        allow_short_leaves: bool = False,
        sign_rate: float = 100.0,
        sign_burst: float = 200.0,
    ) -> None:
        self.kek = kek
        self.lifetimes = LeafLifetimes(
            default=timedelta(seconds=leaf_ttl), allow_short_for_testing=allow_short_leaves
        )
        self.limiter = RateLimiter(sign_rate, sign_burst, clock=time.monotonic)
        self.authority: CertificateAuthority | None = None
        self.ctx: Context | None = None

    # -- lifecycle (called by RegistryServer) --------------------------------------------------

    async def start(self, ctx: Context, etcd: EtcdClient) -> None:
        """Open the stored CA before serving; a wrong key-encryption key refuses to start."""
        self.ctx = ctx
        if self.kek is None:
            log.warning(
                "no CA key-encryption key configured (--ca-kek-file or "
                "WEFT_SERVER_CA_KEK): the CA endpoints answer 503"
            )
            return
        self.authority = CertificateAuthority(
            EtcdCAStore(etcd, ctx.keys), self.kek, lifetimes=self.lifetimes
        )
        try:
            bundle = await self.authority.load()
            log.info(
                "CA loaded",
                extra={
                    "kv": {"trust_domain": bundle.trust_domain, "active_root": bundle.active.id}
                },
            )
        except ca.NotInitialised:
            log.info("the CA is not initialised yet; run `weft ca init`")
        # WrongKeyEncryptionKey / CorruptState propagate: the server must not start.

    async def run(self) -> None:
        """Follow the stored state (other servers' changes) and drop retired roots on time."""
        assert self.ctx is not None
        if self.authority is None:
            return
        ctx, authority = self.ctx, self.authority
        backoff = Backoff(initial=1.0, maximum=30.0)
        while True:
            deadline = trio.current_time() + 60
            if authority.initialised:
                next_change = authority.status().next_change
                if next_change is not None:
                    seconds = (next_change - ca.utc_now()).total_seconds()
                    deadline = trio.current_time() + max(0.5, min(seconds, 60))
            changed = await ctx.hub.wait((CA_TOPIC,), deadline=deadline)
            try:
                if changed or not authority.initialised:
                    await authority.refresh()
                elif authority.status().next_change is not None and await authority.tick():
                    log.info("retired CA root dropped from the trust bundle")
                backoff.reset()
            except ca.NotInitialised:
                pass
            except (CAError, EtcdError) as exc:
                delay = backoff.next()
                log.warning("CA upkeep failed (retrying in %.1fs): %s", delay, exc)
                await trio.sleep(delay)

    # -- HTTP ----------------------------------------------------------------------------------

    def _authority(self) -> CertificateAuthority:
        if self.authority is None:
            raise CAHTTPError(
                ca.NotInitialised(
                    "this server has no CA key-encryption key: start it with --ca-kek-file or "
                    "WEFT_SERVER_CA_KEK"
                )
            )
        return self.authority

    def _caller(self, token: Token | None) -> ca.Caller:
        assert self.ctx is not None
        if token is None:
            raise Forbidden("signing needs a token; none was sent")
        if token.role is Role.OPERATOR:
            return Operator()
        if token.role is Role.AGENT:
            services = frozenset(
                ServiceRef(i.namespace, i.service) for i in self.ctx.mirror.instances_on(token.node)
            )
            return NodeAgent(token.node, services)
        if token.role is Role.ADAPTER:
            services = frozenset(
                ServiceRef(i.namespace, i.service)
                for insts in self.ctx.mirror.instances.values()
                for i in insts.values()
                if i.source == token.source
            )
            return Adapter(token.source, services)
        return ReadOnly()

    def mount(self, router: Router, ctx: Context) -> None:
        def route(method: str, pattern: str, *, consul: bool = False):  # type: ignore[no-untyped-def]
            def add(handler):  # type: ignore[no-untyped-def]
                async def wrapped(request: Request) -> Response:
                    try:
                        return await handler(request)
                    except CAError as exc:
                        error = CAHTTPError(exc)
                        if error.status == 500:
                            raise
                        raise error from exc

                router.add(method, pattern, wrapped, tags=("consul",) if consul else ("ca",))
                return handler

            return add

        @route("GET", "/v1/ca/roots")
        async def roots(request: Request) -> Response:
            # Open: the trust bundle is public, and a joining host fetches it before it has a
            # token (it checks the root's fingerprint, like kubeadm's CA cert hash).
            index = await ctx.block(request, lambda: ctx.mirror.index(CA_TOPIC), (CA_TOPIC,))
            bundle = self._authority().bundle()
            return Response.json(bundle.to_json(), headers=[("X-Consul-Index", str(index))])

        @route("GET", "/v1/agent/connect/ca/roots", consul=True)
        async def consul_roots(request: Request) -> Response:
            index = await ctx.block(request, lambda: ctx.mirror.index(CA_TOPIC), (CA_TOPIC,))
            import json

            body = json.dumps(self._authority().bundle().to_consul()).encode()
            return consul_response(body, index)

        @route("GET", "/v1/ca/status")
        async def status(request: Request) -> Response:
            ctx.reader(request)
            authority = self._authority()
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
                    "leaf_ttl_seconds": self.lifetimes.default.total_seconds(),
                    "bundle": s.bundle.to_json(),
                }
            )

        @route("POST", "/v1/ca/init")
        async def init(request: Request) -> Response:
            ctx.authorizer.operator(ctx.token(request), "initialising the CA")
            data = decode(request.json(), INIT_SHAPE)
            if not data.get("trust_domain"):
                raise InvalidInput("trust_domain: is required", field="trust_domain")
            authority = self._authority()
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
                extra={
                    "kv": {"trust_domain": data["trust_domain"], "imported": imported is not None}
                },
            )
            return Response.json(
                {
                    "bundle": done.bundle.to_json(),
                    "root_key_pem": done.root_key_pem.decode() if done.root_key_pem else None,
                }
            )

        @route("POST", "/v1/ca/rotate")
        async def rotate(request: Request) -> Response:
            ctx.authorizer.operator(ctx.token(request), "rotating the CA")
            data = decode(request.json() if request.body else {}, ROTATE_SHAPE)
            done = await self._authority().rotate(
                root_key_pem=data.get("root_key"),
                root_key_type=_key_type(data.get("key_type")),
                keep_root_key=data.get("keep_root_key"),
                replacement=_imported(data),
            )
            log.info(
                "CA rotated",
                extra={
                    "kv": {
                        "previous_root": done.previous_root_id,
                        "active_root": done.bundle.active.id,
                    }
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

        @route("POST", "/v1/ca/sign")
        async def sign(request: Request) -> Response:
            token = ctx.token(request)
            caller = self._caller(token)
            if isinstance(caller, ReadOnly):
                raise Forbidden(
                    f"a {token.role if token else 'missing'} token may not have certificates signed"
                )
            data = decode(request.json(), SIGN_SHAPE)
            for required in ("csr", "service"):
                if not data.get(required):
                    raise InvalidInput(f"{required}: is required", field=required)
            authority = self._authority()
            try:
                self.limiter.acquire(token.accessor if token else "")
            except ca.RateLimited as exc:
                error = CAHTTPError(exc)
                raise error from exc
            identity = SpiffeId(
                authority.bundle().trust_domain, data.get("namespace", "default"), data["service"]
            )
            lifetime = timedelta(seconds=data["lifetime"]) if "lifetime" in data else None
            cert = await authority.sign(data["csr"], identity, caller, lifetime=lifetime)
            return Response.json(_issued(cert, authority.bundle()))

        @route("POST", "/v1/ca/server-certificate")
        async def server_certificate(request: Request) -> Response:
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
            authority = self._authority()
            cert = await authority.issue_server_certificate(
                key, data["dns_names"], data.get("ip_addresses", []), lifetime=lifetime
            )
            return Response.json(_issued(cert, authority.bundle()))


def retry_after_header(exc: RegistryError) -> list[tuple[str, str]]:
    seconds = getattr(exc, "retry_after", None)
    if seconds is None:
        return []
    return [("Retry-After", str(max(1, math.ceil(seconds))))]
