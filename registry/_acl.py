"""Access tokens and what each role may do (pure; the tokens themselves live in etcd, hashed).

    operator   everything
    agent      bound to one node: writes only that node's instances, checks and maintenance
    adapter    bound to one source (e.g. `k8s/prod`): writes only instances of that source,
               and traffic resources of that source (never an operator's or another source's)
    read       reads only

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
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ._errors import Forbidden, InvalidInput
from ._model import Instance


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
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Token:
        data = json.loads(raw)
        data["role"] = Role(data["role"])
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


def new_token(
    role: Role | str,
    *,
    node: str = "",
    source: str = "",
    description: str = "",
    now: float,
    key_prefix: Mapping[str, object] | None = None,
    key: Mapping[str, object] | None = None,
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
    )
    return secret, token


class Authorizer:
    def __init__(self, *, anonymous_reads: bool) -> None:
        self.anonymous_reads = anonymous_reads

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
        self.write_node(token, instance.node, what=f"service instance {instance.id!r}")
        if token is not None and token.role is Role.ADAPTER and instance.source != token.source:
            raise Forbidden(
                f"this adapter token may only write instances of source {token.source!r}, "
                f"not {instance.source!r}"
            )

    def write_node(self, token: Token | None, node: str, *, what: str) -> None:
        if token is None:
            raise Forbidden(f"writing {what} needs a token; none was sent")
        if token.role is Role.OPERATOR or token.role is Role.ADAPTER:
            return
        if token.role is Role.AGENT:
            if token.node != node:
                raise Forbidden(
                    f"this agent token is bound to node {token.node!r}; it may not write "
                    f"{what} on node {node!r}"
                )
            return
        raise Forbidden(f"a {token.role} token may not write {what}")
