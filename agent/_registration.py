"""Registration with anti-entropy: the host's definitions are the truth.

The agent holds one lease for its node and registers every defined service on it, so a dead
agent's instances leave the catalog after the lease TTL. It re-syncs fully at start, after
reconnecting, when its lease was lost, when definitions change, and every `sync_interval`;
a sync also removes the node's agent-owned instances it no longer defines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff

from ._definitions import ServiceDef

log = logging.getLogger("weft.agent.registration")


def instance_body(
    d: ServiceDef,
    *,
    node: str,
    node_address: str,
    lease: str,
    identity: str,
    extra_meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": d.name,
        "id": d.id,
        "node": node,
        "namespace": d.namespace,
        "address": d.address or node_address,
        "node_address": node_address,
        "port": d.port,
        "protocol": d.protocol,
        "tags": list(d.tags),
        "meta": {**dict(d.meta), **(extra_meta or {})},
        "weights": {"passing": d.weights[0], "warning": d.weights[1]},
        "lease": lease,
        "checks": [dict(c.spec) for c in d.checks],
    }
    if d.kind:
        body["kind"] = d.kind
    if d.sidecar_port:
        body["sidecar_port"] = d.sidecar_port
        body["identity"] = identity
    return body


class Registrar:
    def __init__(
        self,
        client: RegistryClient,
        *,
        node: str,
        node_address: str,
        lease_ttl: int,
        sync_interval: float,
        identity_of: Callable[[ServiceDef], str],
    ) -> None:
        self.client = client
        self.node = node
        self.node_address = node_address
        self.lease_ttl = lease_ttl
        self.sync_interval = sync_interval
        self.identity_of = identity_of
        # Meta the agent adds (the sidecar's metrics address, once its proxy serves).
        self.meta_of: Callable[[ServiceDef], dict[str, str]] = lambda d: {}
        self.lease: str | None = None
        self.refused: dict[str, str] = {}  # definition id -> why the registry refused it
        self.defs: list[ServiceDef] = []
        self.synced = trio.Event()  # set after the first complete sync
        self.connected = False
        self.last_sync = 0.0
        self.on_registered: Callable[[dict[str, Any]], None] = lambda view: None
        self.on_lease_lost: Callable[[], None] = lambda: None
        self.on_reconnected: Callable[[], None] = lambda: None
        self.on_refusals: Callable[[], None] = lambda: None  # `refused` changed
        self._resync = trio.Event()

    def set_definitions(self, defs: list[ServiceDef]) -> None:
        self.defs = list(defs)
        self._resync.set()

    async def sync(self) -> None:
        """Register every definition on our lease and remove what we no longer define."""
        if self.lease is None:
            self.lease = await self.client.grant_lease(self.lease_ttl)
            log.info("granted lease", extra={"kv": {"lease": self.lease, "ttl": self.lease_ttl}})
        wanted = set()
        refused_before = set(self.refused)
        for d in self.defs:
            body = instance_body(
                d,
                node=self.node,
                node_address=self.node_address,
                lease=self.lease,
                identity=self.identity_of(d),
                extra_meta=self.meta_of(d),
            )
            try:
                view = await self.client.register(body)
            except APIError as exc:
                if exc.status != 403:
                    raise
                # Not this host's to register (its token's service set): the other services
                # must still be registered, so refuse this one alone, loudly.
                if self.refused.get(d.id) != exc.message:
                    log.error(
                        "the registry refused to register %s: %s",
                        d.name,
                        exc.message,
                        extra={"kv": {"service": d.name, "id": d.id}},
                    )
                self.refused[d.id] = exc.message
                continue
            self.refused.pop(d.id, None)
            self.on_registered(view)
            wanted.add((d.name, d.id))
        for inst in await self.client.instances(node=self.node, source="agent"):
            if (inst["service"], inst["id"]) not in wanted:
                log.info(
                    "removing %s/%s: no longer defined on this host", inst["service"], inst["id"]
                )
                try:
                    await self.client.deregister(inst["service"], self.node, inst["id"])
                except APIError as exc:
                    if exc.status != 403:
                        raise
                    log.error("the registry refused to remove %s: %s", inst["id"], exc.message)
        for gone in set(self.refused) - {d.id for d in self.defs}:
            del self.refused[gone]
        if set(self.refused) != refused_before:
            self.on_refusals()
        self.last_sync = trio.current_time()
        self.synced.set()

    async def run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                await self.sync()
                if not self.connected:
                    log.info(
                        "registered with the registry",
                        extra={"kv": {"services": len(self.defs), "server": self.client.address}},
                    )
                    self.connected = True
                    self.on_reconnected()
                backoff.reset()
                await self._hold()
            except APIError as exc:
                if exc.status == 404 and "lease" in exc.message:
                    self._lease_lost()
                    continue
                log.warning("registration refused: %s (HTTP %d); retrying", exc.message, exc.status)
            except ServerUnreachable as exc:
                if self.connected:
                    log.warning(
                        "lost the registry: %s; data plane keeps its last snapshot", exc.message
                    )
                self.connected = False
            await trio.sleep(backoff.next())

    def _lease_lost(self) -> None:
        log.warning("our lease is gone (expired while away?); registering again")
        self.lease = None
        self.on_lease_lost()

    async def _hold(self) -> None:
        """Keep the lease alive; return to re-sync when asked or when it is time."""
        assert self.lease is not None
        next_sync = trio.current_time() + self.sync_interval
        while True:
            with trio.move_on_at(min(next_sync, trio.current_time() + self.lease_ttl / 3)):
                await self._resync.wait()
                self._resync = trio.Event()
                return
            if trio.current_time() >= next_sync:
                return
            try:
                await self.client.keepalive(self.lease)
            except APIError as exc:
                if exc.status == 404:
                    self._lease_lost()
                    return
                raise

    async def deregister_all(self) -> None:
        """On a clean stop: revoke the lease, taking our instances out at once."""
        if self.lease is None:
            return
        try:
            await self.client.revoke(self.lease)
        except (APIError, ServerUnreachable) as exc:
            log.warning(
                "could not revoke our lease on stop (%s); instances leave after its TTL", exc
            )
        self.lease = None
