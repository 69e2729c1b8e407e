"""The authorize layer of the inbound stack: may this verified caller reach the application?

Between identity (TLS, `_inbound`) and forwarding: for HTTP, `InboundRouter` is the
connection's router and decides per request, answering 403 with `x-weft-denied` naming the
rule; for opaque TCP, `allow_connection` decides once per connection (refused by closing).

Two policies must both allow, so either can only narrow what the other lets through:
1. the service's own `authorization` (its definition's allow/deny lists, `_authz.Authorizer`),
2. the mesh's intentions for this destination (snapshot v3, `_intentions.Intentions`).
A caller the first refuses never reaches the second. Both decisions are pure and cached per
snapshot and caller; only an intention with L7 permissions is evaluated per request.
Refusals are counted in `weft_proxy_authz_denied_total{protocol,peer,reason}`. This layer
also owns what the application is told about the caller: any identity header the client sent
is dropped and the verified `x-weft-client-id` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ca import SpiffeId

from ._authz import Decision
from ._errors import HttpError
from ._h1 import Head
from ._hop_by_hop import CLIENT_ID, strip_identity
from ._http_plan import Reject, Route
from ._intentions import SourcePolicy
from ._metrics import Metrics

if TYPE_CHECKING:
    from ._listener_host import Config

log = logging.getLogger("weft.proxy")


class InboundRouter:
    """The per-request router of one inbound HTTP connection from `identity`."""

    __slots__ = (
        "_client_id",
        "_config",
        "_decided",
        "_for",
        "_per_request",
        "identity",
        "metrics",
        "stats",
    )

    def __init__(
        self, identity: SpiffeId, metrics: Metrics, config: Callable[[], Config | None]
    ) -> None:
        self.identity = identity
        self.metrics = metrics
        self.stats = metrics.http("inbound", identity.service)
        metrics.peer_ids[("inbound", identity.service)] = identity.uri
        self._client_id = identity.uri.encode()
        self._config = config
        self._for: object = None  # the config the cached decision was made for
        self._decided: Route | Reject | None = None
        self._per_request: SourcePolicy | None = None  # L7 intention permissions

    def __call__(self, head: Head) -> Route | Reject:
        # Whatever the client sent as an identity is not its identity: the verified one is
        # added below (Route.add), whatever the decision.
        head.headers = strip_identity(head.headers)
        if head.method == b"CONNECT":
            raise HttpError(
                405,
                "CONNECT is not served on a service's inbound port",
                label="connect_not_allowed",
            )
        config = self._config()
        cached = self._decided
        if self._for is config and config is not None and cached is not None:
            if isinstance(cached, Reject):
                self._count(cached.label)
                return cached
            return self._per_request_check(head, cached, config)
        if config is None or config.app is None:
            raise HttpError(
                503, "this proxy has no inbound application configured", label="no_application"
            )
        identity = self.identity
        decision = config.authorizer.decide(identity)
        self._per_request = None
        result: Route | Reject
        intentions = config.snapshot.intentions
        if decision.allowed and intentions is not None:
            policy = intentions.for_source(identity)
            if policy.decision is None:
                self._per_request = policy
            else:
                decision = policy.decision
        if not decision.allowed:
            result = self._reject(decision, config)
            self._count(decision.label)
        else:
            result = Route(
                cluster=config.app,
                stats=self.stats,
                peer=identity.service,
                add=[(CLIENT_ID, self._client_id)],
            )
        self._for, self._decided = config, result
        if isinstance(result, Route):
            return self._per_request_check(head, result, config)
        return result

    def _per_request_check(self, head: Head, route: Route, config: Config) -> Route | Reject:
        policy = self._per_request
        if policy is None:
            return route
        decision = policy.decide(head.method, head.target, head.headers)
        if decision.allowed:
            return route
        self._count(decision.label)
        return self._reject(decision, config)

    def _reject(self, decision: Decision, config: Config) -> Reject:
        return Reject(
            403,
            f"{self.identity} may not call {config.snapshot.identity.service}: {decision.reason}",
            self.stats,
            headers=[(b"x-weft-denied", decision.reason.encode("ascii", "replace"))],
            label=decision.label,
        )

    def _count(self, label: str) -> None:
        self.metrics.add(self.metrics.authz_denied, ("http", self.identity.service, label))


def allow_connection(config: Config, identity: SpiffeId, metrics: Metrics) -> bool:
    """Opaque TCP: one decision for the whole connection (refused by closing it)."""
    decision = config.authorizer.decide(identity)
    intentions = config.snapshot.intentions
    if decision.allowed and intentions is not None:
        final = intentions.for_source(identity, http=False).decision
        assert final is not None  # without requests, every policy is final
        decision = final
    if not decision.allowed:
        metrics.add(metrics.authz_denied, ("tcp", identity.service, decision.label))
        log.info(
            "inbound connection refused",
            extra={"kv": {"source": str(identity), "reason": decision.reason}},
        )
    return decision.allowed
