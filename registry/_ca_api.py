"""The CA mounted on `weft server`: its lifecycle, its timers, and how its errors answer.

`ca` is pure; this module gives it an etcd-backed `CAStore` (`_ca_store.py`), maps tokens to
signing callers (an agent may have certificates only for services registered on its node),
rate-limits signing, and mounts `/v1/ca/...` and Consul's `/v1/agent/connect/ca/roots`
(declared in `_ca_routes.py`).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta

import trio

import ca
from ca import (
    Adapter,
    CAError,
    CertificateAuthority,
    KeyEncryptionKey,
    LeafLifetimes,
    NodeAgent,
    Operator,
    RateLimiter,
    ReadOnly,
    ServiceRef,
)

from ._acl import Role, Token
from ._backoff import Backoff
from ._ca_store import EtcdCAStore
from ._ca_store import read_kek as read_kek
from ._context import Context
from ._errors import Forbidden, RegistryError
from ._mirror import CA as CA_TOPIC
from .etcd import EtcdClient, EtcdError
from .web import Router

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
        authority = self.authority
        ctx.trust_domain = lambda: (
            authority.bundle().trust_domain if authority.initialised else None
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

    @property
    def context(self) -> Context:
        assert self.ctx is not None, "mounted before start()"
        return self.ctx

    def active_authority(self) -> CertificateAuthority:
        """The CA, or a 503 naming the missing key-encryption key."""
        if self.authority is None:
            raise CAHTTPError(
                ca.NotInitialised(
                    "this server has no CA key-encryption key: start it with --ca-kek-file or "
                    "WEFT_SERVER_CA_KEK"
                )
            )
        return self.authority

    def caller(self, token: Token | None) -> ca.Caller:
        """Who is asking for a certificate, as the CA's signing policy sees them."""
        assert self.ctx is not None
        if token is None:
            raise Forbidden("signing needs a token; none was sent")
        if token.role is Role.OPERATOR:
            return Operator()
        if token.role is Role.AGENT:
            # Only services both registered on its node and in its token's service set.
            services = frozenset(
                ServiceRef(i.namespace, i.service)
                for i in self.ctx.mirror.instances_on(token.node)
                if token.allows_service(i.service)
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
        from ._ca_routes import AREAS
        from ._connect_api import AREA as CONNECT

        self.ctx = ctx
        for area in (*AREAS, CONNECT):
            area.mount(router, self)


def retry_after_header(exc: RegistryError) -> list[tuple[str, str]]:
    seconds = getattr(exc, "retry_after", None)
    if seconds is None:
        return []
    return [("Retry-After", str(max(1, math.ceil(seconds))))]
