"""The authorize layer of the inbound stack: may this verified caller reach the application?

Between identity (TLS, `_inbound`) and forwarding: for HTTP, `InboundRouter` is the
connection's router and decides per request (once per snapshot and caller, then cached),
answering 403 with `x-weft-denied` naming the rule; for opaque TCP, `allow_connection` decides
once per connection. The decision itself is pure (`_authz.Authorizer`); refusals are counted
in `weft_proxy_authz_denied_total{protocol,peer,reason}`. This layer also owns what the
application is told about the caller: any identity header the client sent is dropped and the
verified `x-weft-client-id` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ca import SpiffeId

from ._errors import HttpError
from ._h1 import Head
from ._hop_by_hop import CLIENT_ID, strip_identity
from ._http_plan import Reject, Route
from ._metrics import Metrics

if TYPE_CHECKING:
    from ._listener_host import Config

log = logging.getLogger("weft.proxy")


class InboundRouter:
    """The per-request router of one inbound HTTP connection from `identity`."""

    __slots__ = ("_client_id", "_config", "_decided", "_for", "identity", "metrics", "stats")

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
        if config is None or config.app is None:
            raise HttpError(
                503, "this proxy has no inbound application configured", label="no_application"
            )
        identity = self.identity
        decision = config.authorizer.decide(identity)
        result: Route | Reject
        if not decision.allowed:
            result = Reject(
                403,
                f"{identity} may not call {config.snapshot.identity.service}: {decision.reason}",
                self.stats,
                headers=[(b"x-weft-denied", decision.reason.encode("ascii", "replace"))],
                label=decision.label,
            )
            self._count(decision.label)
        else:
            result = Route(
                cluster=config.app,
                stats=self.stats,
                peer=identity.service,
                add=[(CLIENT_ID, self._client_id)],
            )
        self._for, self._decided = config, result
        return result

    def _count(self, label: str) -> None:
        self.metrics.add(self.metrics.authz_denied, ("http", self.identity.service, label))


def allow_connection(config: Config, identity: SpiffeId, metrics: Metrics) -> bool:
    """Opaque TCP: one decision for the whole connection (refused by closing it)."""
    decision = config.authorizer.decide(identity)
    if not decision.allowed:
        metrics.add(metrics.authz_denied, ("tcp", identity.service, decision.label))
        log.info(
            "inbound connection refused",
            extra={"kv": {"source": str(identity), "reason": decision.reason}},
        )
    return decision.allowed
