"""Inbound authorization: may this source identity talk to this proxy's service? Pure.

A snapshot's `authorization` holds an ordered list of rules and a default. The first rule
whose sources match the client's SPIFFE ID decides; when none matches, the default does.
A source is written as one of:

    "*"                                  any identity of the proxy's trust domain
    "web"                                service `web` in the proxy's own namespace
    "shop/web", "shop/*"                 service `web` (or any service) in namespace `shop`
    "spiffe://td/ns/shop/svc/web"        exactly that identity (`.../svc/*` for a namespace)

Identities of another trust domain never match anything but a full SPIFFE ID naming them, and
TLS has already refused certificates the trust bundle does not vouch for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ca import SpiffeId


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # for the log and the 403's header: "rule 'x' denies ...", "default deny"
    label: str  # low-cardinality metric label: "rule:<name>" or "default"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    allow: bool
    sources: tuple[str, ...]


def _matcher(pattern: str, own: SpiffeId) -> tuple[str, str, str]:
    """(trust domain, namespace, service) with '*' as a wildcard, for one source pattern."""
    if pattern == "*":
        return (own.trust_domain, "*", "*")
    if pattern.startswith("spiffe://"):
        if pattern.endswith("/svc/*"):
            base = SpiffeId.parse(pattern[:-1] + "x")
            return (base.trust_domain, base.namespace, "*")
        sid = SpiffeId.parse(pattern)
        return (sid.trust_domain, sid.namespace, sid.service)
    namespace, _, service = pattern.rpartition("/")
    return (own.trust_domain, namespace or own.namespace, service)


def check_source(pattern: str, own: SpiffeId) -> None:
    """Raise ValueError (naming the pattern) if `pattern` is not a valid source."""
    try:
        td, ns, svc = _matcher(pattern, own)
        SpiffeId(td, "x" if ns == "*" else ns, "x" if svc == "*" else svc)
    except ValueError as exc:
        raise ValueError(f"source {pattern!r} is not valid: {exc}") from None
    if ns == "*" and svc != "*":
        raise ValueError(f"source {pattern!r}: a wildcard namespace needs a wildcard service")


class Authorizer:
    def __init__(self, own: SpiffeId, rules: list[Rule], default_allow: bool) -> None:
        self._own = own
        self._rules = [(rule, [_matcher(p, own) for p in rule.sources]) for rule in rules]
        self._default = Decision(
            default_allow, f"default policy {'allows' if default_allow else 'denies'}", "default"
        )
        self._cache: dict[SpiffeId, Decision] = {}

    def decide(self, source: SpiffeId) -> Decision:
        decision = self._cache.get(source)
        if decision is None:
            decision = self._decide(source)
            if len(self._cache) < 10_000:
                self._cache[source] = decision
        return decision

    def _decide(self, source: SpiffeId) -> Decision:
        for rule, matchers in self._rules:
            for td, ns, svc in matchers:
                if (
                    td == source.trust_domain
                    and (ns == "*" or ns == source.namespace)
                    and (svc == "*" or svc == source.service)
                ):
                    verb = "allows" if rule.allow else "denies"
                    return Decision(
                        rule.allow, f"rule {rule.name!r} {verb} {source}", f"rule:{rule.name}"
                    )
        return self._default
