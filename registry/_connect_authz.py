"""Whether one mesh service may call another, as `/v1/agent/connect/authorize` answers it.

This is the one seam where mesh-wide authorization is decided for Consul's API: `decide` is
the function intentions plug into (match the source and destination against the stored
intentions, most precise first, and fall back to the mesh default). Until then it answers
from the authorization that exists today: callers must hold a certificate of this mesh's
trust domain, and the mesh default allows; each sidecar still applies its own service's
`authorization` rules (services.d) to every connection, which the registry does not see.
"""

from __future__ import annotations

from dataclasses import dataclass

from ca import SpiffeId

from ._context import Context


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
    return ConnectDecision(
        True,
        f"default allow: no intention matches {source.namespace}/{source.service} -> "
        f"{namespace}/{target}",
    )
