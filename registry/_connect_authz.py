"""Whether one mesh service may call another, as `/v1/agent/connect/authorize` answers it.

This is the one seam where mesh-wide authorization is decided for Consul's API: callers must
hold a certificate of this mesh's trust domain; then the intention that governs the pair
(Consul's precedence, `registry.intentions.deciding`) decides, and the server's
`intention_default` when none does. An L7 intention answers "not authorized" here, as Consul
does: a connection check cannot know the requests that will follow. Each sidecar also applies
its own service's `authorization` rules (services.d), which the registry does not see.
"""

from __future__ import annotations

from dataclasses import dataclass

from ca import SpiffeId

from ._context import Context
from ._intention_model import Name, deciding
from .consul._intentions import stored


@dataclass(frozen=True, slots=True)
class ConnectDecision:
    authorized: bool
    reason: str


def decide(ctx: Context, source: SpiffeId, target: str, namespace: str) -> ConnectDecision:
    """May a client holding `source`'s certificate connect to `target` in `namespace`?"""
    trust_domain = ctx.trust_domain()
    if trust_domain is None or not source.in_domain(trust_domain):
        return ConnectDecision(
            False,
            f"the client certificate's trust domain {source.trust_domain!r} is not this "
            f"mesh's ({trust_domain or 'no CA initialised'})",
        )
    pair = f"{source.namespace}/{source.service} -> {namespace}/{target}"
    found = deciding(stored(ctx), Name(source.namespace, source.service), Name(namespace, target))
    if found is None:
        allowed = ctx.options.intention_default == "allow"
        return ConnectDecision(
            allowed, f"default {ctx.options.intention_default}: no intention matches {pair}"
        )
    if found.action not in ("allow", "deny"):
        return ConnectDecision(False, f"{pair} is governed by an L7 intention ({found.id})")
    return ConnectDecision(
        found.action == "allow", f"intention {found.id} says {found.action} for {pair}"
    )
