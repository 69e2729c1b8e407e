"""Every `metrics_interval`, read each local proxy's `/metrics` and push the node's counters.

One push per node carries every proxy's cumulative counters (`_proxy_metrics.compact`), on
the agent's lease: the server stores it in a bounded ring of samples that vanishes with the
lease, and any server computes windows from it (docs/observability.md). Pushing cumulative
counters rather than deltas means a lost push costs resolution, never correctness.

It also notices each proxy's admin address, so the registration can carry it as the
instance's `weft_metrics` meta (Prometheus' Consul discovery finds the scrape target there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from registry.client import APIError, RegistryClient, ServerUnreachable

from ._proxy_metrics import compact

log = logging.getLogger("weft.agent.metrics")


@dataclass(frozen=True)
class Target:
    service: str
    instance: str
    identity: str
    admin: str | None  # host:port of the proxy's admin listener, once it is serving


class MetricsPusher:
    def __init__(
        self,
        client: RegistryClient,
        *,
        interval: float,
        targets: Callable[[], list[Target]],
        lease: Callable[[], str | None],
        on_admin_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.targets = targets
        self.lease = lease
        self.on_admin_change = on_admin_change
        self.admins: dict[str, str] = {}  # instance id -> admin address
        self.pushed = 0
        self.refused = ""

    async def gather(self, http: httpx.AsyncClient) -> list[dict[str, Any]]:
        proxies = []
        admins = {}
        for t in self.targets():
            if not t.admin:
                continue
            admins[t.instance] = t.admin
            try:
                resp = await http.get(f"http://{t.admin}/metrics")
                if resp.status_code != 200:
                    continue
                numbers = compact(resp.text)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.debug("cannot read %s's metrics: %s", t.instance, exc)
                continue
            entry: dict[str, Any] = {"service": t.service, "instance": t.instance, **numbers}
            entry["admin"] = t.admin
            if t.identity:
                entry["identity"] = t.identity
            proxies.append(entry)
        if admins != self.admins:
            self.admins = admins
            self.on_admin_change()
        return proxies

    async def push_once(self, http: httpx.AsyncClient) -> bool:
        lease = self.lease()
        proxies = await self.gather(http)
        if lease is None or not proxies:
            return False  # a host without sidecars (yet) has nothing to store
        try:
            await self.client.push_metrics({"lease": lease, "proxies": proxies})
        except APIError as exc:
            if exc.status != 429 and exc.message != self.refused:
                log.warning("metrics push refused: %s (HTTP %d)", exc.message, exc.status)
            self.refused = exc.message
            return False
        except ServerUnreachable:
            return False  # the registration loop reports an unreachable registry
        self.refused = ""
        self.pushed += 1
        return True

    async def run(self) -> None:
        if self.interval <= 0:
            return
        async with httpx.AsyncClient(trust_env=False, timeout=min(5.0, self.interval)) as http:
            next_at = trio.current_time()
            while True:
                await self.push_once(http)
                # A fixed cadence: a slow scrape does not stretch the spacing of samples.
                next_at = max(next_at + self.interval, trio.current_time())
                await trio.sleep_until(next_at)
