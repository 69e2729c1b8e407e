"""Access tokens and what each role may do (pure; the tokens themselves live in etcd, hashed).

    operator   everything
    agent      bound to one node AND a set of services (names, and prefixes as Consul's
               `service_prefix`): registers only those services, only on that node, gets
               certificates only for them, and writes that node's checks and maintenance
    adapter    bound to one source (e.g. `k8s/prod`): writes only instances of that source, and
               only checks and maintenance of nodes that hold nothing but that source's instances
    read       reads only

An agent token made before service sets existed has none (`services` absent): it keeps its old
reach (any service on its node) so an upgrade breaks no host, and each server logs a deprecation
warning the first time it sees it; `weft token update --services` scopes it, and the server
setting `require_agent_services` refuses unscoped agent tokens once every host is migrated.

Whether a request with no token may read is a server setting (`anonymous_reads`).

KV writes need an operator token, or a token of another role whose KV rules allow them,
as Consul's `key_prefix` / `key` ACL rules do: `key` rules name one key, `key_prefix` rules
every key under a prefix; an exact `key` rule beats any prefix, and the longest matching
prefix beats shorter ones. Policies are `write` (and read), `read` and `deny` (no reads of
those keys either).
A token's secret is shown once, at creation; etcd stores its SHA-256 (secrets are 256-bit
random strings, so a slow hash would add nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ._errors import Forbidden, InvalidInput
from ._model import Instance
from ._validate import service_name

log = logging.getLogger("weft.registry.acl")


class Role(StrEnum):
    OPERATOR = "operator"
    AGENT = "agent"
    ADAPTER = "adapter"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Token:
    accessor: str
    secret_hash: str
    role: Role
    node: str = ""
    source: str = ""
    description: str = ""
    created_at: float = 0.0
    key_prefix: Mapping[str, str] = field(default_factory=dict)
    key: Mapping[str, str] = field(default_factory=dict)
    # None: an agent token from before service sets (legacy; see the module docstring).
    services: tuple[str, ...] | None = None
    service_prefix: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        return self.services is not None

    def allows_service(self, name: str) -> bool:
        """May this token act for service `name`? (Unscoped tokens: yes, as before.)"""
        if self.services is None:
            return True
        return name in self.services or any(name.startswith(p) for p in self.service_prefix)

    def service_listing(self) -> str:
        if self.services is None:
            return "any (no service set)"
        names = [*self.services, *(p + "*" for p in self.service_prefix)]
        return ", ".join(names) if names else "none"

    def kv_policy(self, name: str) -> str | None:
        """What this token's KV rules say of key `name` (None: no rule matches)."""
        if name in self.key:
            return self.key[name]
        best: str | None = None
        for prefix in self.key_prefix:
            if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self.key_prefix[best] if best is not None else None

    def to_json(self) -> bytes:
        data = asdict(self)
        data["role"] = str(self.role)
        if self.services is None:
            del data["services"], data["service_prefix"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Token:
        data = json.loads(raw)
        data["role"] = Role(data["role"])
        if data.get("services") is not None:
            data["services"] = tuple(data["services"])
            data["service_prefix"] = tuple(data.get("service_prefix") or ())
        return cls(**data)

    @property
    def kv_rules(self) -> dict[str, dict[str, str]]:
        return {"key_prefix": dict(self.key_prefix), "key": dict(self.key)}

    def public(self) -> dict[str, object]:
        """What `weft token list` shows: everything but the hash."""
        return {
            "accessor": self.accessor,
            "role": str(self.role),
            "node": self.node,
            "source": self.source,
            "description": self.description,
            "created_at": self.created_at,
            **({"key_prefix": dict(self.key_prefix)} if self.key_prefix else {}),
            **({"key": dict(self.key)} if self.key else {}),
            **(
                {"services": list(self.services), "service_prefix": list(self.service_prefix)}
                if self.services is not None
                else {}
            ),
        }


def new_secret() -> str:
    return "weft_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


KV_POLICIES = ("read", "write", "deny")


def check_kv_rules(rules: Mapping[str, object], field_name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, policy in rules.items():
        if policy not in KV_POLICIES:
            raise InvalidInput(
                f"{field_name}.{name}: policy {policy!r} is not one of read, write, deny",
                field=f"{field_name}.{name}",
            )
        if len(name.encode()) > 1024:
            raise InvalidInput(f"{field_name}: keys are at most 1024 bytes", field=field_name)
        out[name] = str(policy)
    return out


MAX_SERVICE_RULES = 256
_PREFIX = re.compile(r"([a-z0-9][a-z0-9-]{0,62})?")


def check_service_rules(
    services: object, prefixes: object
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A token's service set: exact names and name prefixes (`""` is every service)."""
    out: list[tuple[str, ...]] = []
    for name, values in (("services", services), ("service_prefix", prefixes)):
        values = values or []
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"{name}: must be a list of service names", field=name)
        if len(values) > MAX_SERVICE_RULES:
            raise InvalidInput(f"{name}: at most {MAX_SERVICE_RULES} entries", field=name)
        for i, value in enumerate(values):
            if name == "services":
                service_name(value, f"{name}[{i}]")
            elif not _PREFIX.fullmatch(value):
                # the start of a service name ("" is every service, as in Consul)
                raise InvalidInput(
                    f"{name}[{i}]: {value!r} is not the start of a service name "
                    "(lowercase letters, digits and '-', at most 63)",
                    field=f"{name}[{i}]",
                )
        out.append(tuple(sorted(set(values))))
    return out[0], out[1]


def new_token(
    role: Role | str,
    *,
    node: str = "",
    source: str = "",
    description: str = "",
    now: float,
    key_prefix: Mapping[str, object] | None = None,
    key: Mapping[str, object] | None = None,
    services: object = None,
    service_prefix: object = None,
) -> tuple[str, Token]:
    """A fresh (secret, token record) pair; checks the role's binding."""
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput(
            f"role {role!r} is not one of operator, agent, adapter, read", field="role"
        ) from None
    if role is Role.AGENT and not node:
        raise InvalidInput("an agent token must be bound to a node (give `node`)", field="node")
    if role is Role.ADAPTER and not source:
        raise InvalidInput(
            "an adapter token must be bound to a source like 'k8s/prod' (give `source`)",
            field="source",
        )
    if role not in (Role.AGENT,) and node:
        raise InvalidInput("only agent tokens are bound to a node", field="node")
    if role not in (Role.ADAPTER,) and source:
        raise InvalidInput("only adapter tokens are bound to a source", field="source")
    prefixes = check_kv_rules(key_prefix or {}, "key_prefix")
    exact = check_kv_rules(key or {}, "key")
    if role is Role.OPERATOR and (prefixes or exact):
        raise InvalidInput(
            "key_prefix: an operator token writes every key; KV rules are for other roles",
            field="key_prefix",
        )
    scope: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    if services is not None or service_prefix is not None:
        if role is not Role.AGENT:
            raise InvalidInput("only agent tokens are bound to a service set", field="services")
        scope = check_service_rules(services, service_prefix)
    secret = new_secret()
    token = Token(
        accessor=secrets.token_hex(8),
        secret_hash=hash_secret(secret),
        role=role,
        node=node,
        source=source,
        description=description,
        created_at=now,
        key_prefix=prefixes,
        key=exact,
        services=scope[0] if scope else None,
        service_prefix=scope[1] if scope else (),
    )
    return secret, token


class Authorizer:
    def __init__(self, *, anonymous_reads: bool, require_agent_services: bool = False) -> None:
        self.anonymous_reads = anonymous_reads
        self.require_agent_services = require_agent_services
        self._warned: set[str] = set()

    def service(self, token: Token | None, service: str, *, what: str) -> None:
        """May `token` register, or have a certificate for, `service`? (403 naming it.)"""
        if token is None or token.role is not Role.AGENT:
            return
        if not token.scoped:
            self._legacy(token)
            return
        if not token.allows_service(service):
            raise Forbidden(
                f"this agent token (node {token.node!r}) may not {what} service {service!r}: "
                f"its services are {token.service_listing()} "
                "(an operator can widen them with `weft token update --services`)"
            )

    def _legacy(self, token: Token) -> None:
        if self.require_agent_services:
            raise Forbidden(
                f"agent token {token.accessor} has no service set and this server requires "
                "one (require_agent_services); run `weft token update "
                f"{token.accessor} --services <names>`"
            )
        if token.accessor not in self._warned and len(self._warned) < 10_000:
            self._warned.add(token.accessor)
            log.warning(
                "agent token %s (node %s) has no service set: it may still act for any "
                "service on its node; this is deprecated, scope it with `weft token update "
                "%s --services <names>`",
                token.accessor,
                token.node,
                token.accessor,
            )

    def read(self, token: Token | None) -> None:
        if token is None and not self.anonymous_reads:
            raise Forbidden("this server requires a token to read; send X-Consul-Token")

    def operator(self, token: Token | None, action: str) -> None:
        if token is None:
            raise Forbidden(f"{action} needs an operator token; none was sent")
        if token.role is not Role.OPERATOR:
            raise Forbidden(f"{action} needs an operator token; this one is {token.role}")

    def write_resources(self, token: Token | None, action: str) -> None:
        """Traffic resources: an operator writes any; an adapter only its own source's, which
        the resource API checks per resource (`resource_owner`)."""
        if token is not None and token.role is Role.ADAPTER:
            return
        self.operator(token, action)

    def write_kv(self, token: Token | None, key: str, *, prefix: bool = False) -> None:
        """`prefix`: a write to every key under `key` (a recursive delete), which Consul
        allows only if no narrower rule under it takes write away."""
        if token is None:
            raise Forbidden("writing KV needs a token; none was sent")
        if token.role is Role.OPERATOR:
            return
        narrower = [
            name
            for rules in (token.key_prefix, token.key)
            for name, policy in rules.items()
            if prefix and name.startswith(key) and policy != "write"
        ]
        if narrower:
            raise Forbidden(
                f"this {token.role} token may not write every KV key under {key!r}: "
                f"its rules keep {', '.join(map(repr, sorted(narrower)))} from writes"
            )
        if token.kv_policy(key) != "write":
            allowed = sorted(p for p, policy in token.key_prefix.items() if policy == "write")
            hint = (
                f"its rules allow writes under {', '.join(map(repr, allowed))}"
                if allowed
                else "writing KV needs an operator token, or key_prefix rules that allow it"
            )
            raise Forbidden(f"this {token.role} token may not write KV key {key!r}: {hint}")

    def read_kv(self, token: Token | None, key: str) -> bool:
        """Whether the token may see key `key` (after `read`): only a `deny` rule hides one."""
        return token is None or token.role is Role.OPERATOR or token.kv_policy(key) != "deny"

    def write_instance(self, token: Token | None, instance: Instance) -> None:
        if token is None:
            raise Forbidden(
                f"writing service instance {instance.id!r} needs a token; none was sent"
            )
        if token.role is Role.ADAPTER:
            if instance.source != token.source:
                raise Forbidden(
                    f"this adapter token may only write instances of source {token.source!r}, "
                    f"not {instance.source!r}"
                )
            return
        self.write_node(token, instance.node, what=f"service instance {instance.id!r}")
        self.service(token, instance.service, what="register")

    def write_node(
        self,
        token: Token | None,
        node: str,
        *,
        what: str,
        sources: frozenset[str] | None = None,
    ) -> None:
        """`sources`: the sources of the instances on `node` (what an adapter token needs)."""
        if token is None:
            raise Forbidden(f"writing {what} needs a token; none was sent")
        if token.role is Role.OPERATOR:
            return
        if token.role is Role.ADAPTER:
            # An adapter acts for its source only: a node holding any other source's instance
            # (a VM's agent-run services, say) is not its to put in maintenance.
            if sources is None or not sources or sources != {token.source}:
                foreign = sorted((sources or frozenset()) - {token.source})
                raise Forbidden(
                    f"this adapter token (source {token.source!r}) may not write {what} on "
                    f"node {node!r}: "
                    + (
                        f"the node holds instances of {', '.join(map(repr, foreign))}"
                        if foreign
                        else "the node holds none of its source's instances"
                    )
                )
            return
        if token.role is Role.AGENT:
            if token.node != node:
                raise Forbidden(
                    f"this agent token is bound to node {token.node!r}; it may not write "
                    f"{what} on node {node!r}"
                )
            return
        raise Forbidden(f"a {token.role} token may not write {what}")
