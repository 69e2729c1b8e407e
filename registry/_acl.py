"""Access tokens and what each role may do (pure; the tokens themselves live in etcd, hashed).

    operator   everything
    agent      bound to one node: writes only that node's instances, checks and maintenance
    adapter    bound to one source (e.g. `k8s/prod`): writes only instances of that source
    read       reads only

Whether a request with no token may read is a server setting (`anonymous_reads`).
A token's secret is shown once, at creation; etcd stores its SHA-256 (secrets are 256-bit
random strings, so a slow hash would add nothing).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
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

    def to_json(self) -> bytes:
        data = asdict(self)
        data["role"] = str(self.role)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Token:
        data = json.loads(raw)
        data["role"] = Role(data["role"])
        return cls(**data)

    def public(self) -> dict[str, object]:
        """What `weft token list` shows: everything but the hash."""
        return {
            "accessor": self.accessor,
            "role": str(self.role),
            "node": self.node,
            "source": self.source,
            "description": self.description,
            "created_at": self.created_at,
        }


def new_secret() -> str:
    return "weft_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(
    role: Role | str, *, node: str = "", source: str = "", description: str = "", now: float
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
    secret = new_secret()
    token = Token(
        accessor=secrets.token_hex(8),
        secret_hash=hash_secret(secret),
        role=role,
        node=node,
        source=source,
        description=description,
        created_at=now,
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
