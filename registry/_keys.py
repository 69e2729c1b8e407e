"""Where every record lives in etcd, under one prefix (default `/weft/`).

    services/<service>/<node>/<instance-id>            instance record (JSON), owner's lease
    health/<service>/<node>/<instance-id>/<check-id>    check definition + state (JSON)
    kv/<key>                                            Consul-style KV value (raw bytes)
    kvflags/<key>                                       its Consul flags (when not 0)
    kvlock/<key>                                        its LockIndex (times it was acquired)
    kvheld/<key>                                        the session holding its lock, on the
                                                        session's lease (expiry releases it)
    sessions/<id>                                       Consul session (JSON), on its own lease
    nodes/<node>                                        a node's declared address and meta
    tokens/<sha256 of secret>                           access token record (JSON)
    leases/<lease-id hex>                               who owns a lease (on the lease itself)
    maint/<node>                                        node maintenance (JSON: reason)
    config/<kind>/<name>                                routing/policy resources
    metrics/<node>/<slot>                               a node's proxies' counters (a ring of
                                                        slots, on the agent's lease)
    ca/...                                              the CA's state
    leader/<duty>                                       leader election among servers
    servers/<identity>                                  a running server's announcement (on its
                                                        own lease)
    agents/<node>                                       the node agent's report (`weft check`),
                                                        on the agent's lease
    sync-barrier                                        written by a server whose watch reconnected

Instances are keyed by node as well as by ID because, as in Consul, an instance ID is unique
only within its node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise ValueError(f"etcd prefix {self.prefix!r} must start and end with '/'")

    def instance(self, service: str, node: str, instance_id: str) -> str:
        return f"{self.prefix}services/{service}/{node}/{instance_id}"

    def services(self) -> str:
        return f"{self.prefix}services/"

    def instance_checks(self, service: str, node: str, instance_id: str) -> str:
        return f"{self.prefix}health/{service}/{node}/{instance_id}/"

    def check(self, service: str, node: str, instance_id: str, check_id: str) -> str:
        return f"{self.prefix}health/{service}/{node}/{instance_id}/{check_id}"

    def kv(self, key: str = "") -> str:
        return f"{self.prefix}kv/{key}"

    def kv_flags(self, key: str = "") -> str:
        return f"{self.prefix}kvflags/{key}"

    def kv_lock_index(self, key: str = "") -> str:
        return f"{self.prefix}kvlock/{key}"

    def kv_holder(self, key: str = "") -> str:
        return f"{self.prefix}kvheld/{key}"

    def node(self, node: str = "") -> str:
        return f"{self.prefix}nodes/{node}"

    def session(self, session_id: str = "") -> str:
        return f"{self.prefix}sessions/{session_id}"

    def token(self, secret_hash: str = "") -> str:
        return f"{self.prefix}tokens/{secret_hash}"

    def lease(self, lease_id: int) -> str:
        return f"{self.prefix}leases/{lease_id:x}"

    def maint(self, node: str = "") -> str:
        return f"{self.prefix}maint/{node}"

    def config(self, kind: str = "", name: str = "") -> str:
        if not kind:
            return f"{self.prefix}config/"
        return f"{self.prefix}config/{kind}/{name}"

    def ca(self, name: str = "") -> str:
        return f"{self.prefix}ca/{name}"

    def metrics(self, node: str = "", slot: str = "") -> str:
        if not node:
            return f"{self.prefix}metrics/"
        return f"{self.prefix}metrics/{node}/{slot}"

    def server(self, identity: str = "") -> str:
        return f"{self.prefix}servers/{identity}"

    def agent_report(self, node: str = "") -> str:
        return f"{self.prefix}agents/{node}"

    def leader(self, duty: str) -> str:
        return f"{self.prefix}leader/{duty}"

    def split(self, key: str) -> tuple[str, list[str]] | None:
        """('services', [service, node, id]) etc. for a key under the prefix, else None."""
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix) :]
        kind, _, tail = rest.partition("/")
        if kind == "kv":
            return kind, [tail]
        if kind == "services":
            parts = tail.split("/", 2)
            return (kind, parts) if len(parts) == 3 else None
        if kind == "health":
            parts = tail.split("/", 3)
            return (kind, parts) if len(parts) == 4 else None
        if kind in ("config", "metrics"):
            parts = tail.split("/", 1)
            return (kind, parts) if len(parts) == 2 else None
        return kind, [tail]
