"""What this host tells the servers for `weft check`: its clock, its last sync, what each
proxy applied and the certificates it holds.

Sent every `report_interval` and soon after a proxy acknowledges a snapshot, to
`PUT /v1/registry/agents/<node>`, which stores it on the agent's lease. The agent's local API
is loopback-only, so this is how an operator's `weft check` learns about every host through
any server. A server too old to take reports answers 404; the agent says so once and keeps trying.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable

from ._certs import CertManager
from ._publisher import Publisher
from ._registration import Registrar

log = logging.getLogger("weft.agent.report")

# Test-only: seconds added to the clock this agent reports, to simulate a skewed host without
# touching the machine's clock. Not an agent setting: nothing in production should set it.
SKEW_ENV = "WEFT_TEST_CLOCK_SKEW"
MIN_SPACING = 1.0  # acks arriving in a burst make one report, not one each


def _epoch(value: Any) -> float:
    return value.timestamp() if value is not None else 0.0


def build_report(
    *,
    registrar: Registrar,
    publisher: Publisher,
    certs: CertManager | None,
    running: dict[str, Any],
    services: dict[str, str],
    sync_interval: float,
    report_interval: float,
    now: float,
    monotonic: float,
    since_sync: float,
) -> dict[str, Any]:
    """The report body. `monotonic` is `time.monotonic()` (when snapshots were published);
    `since_sync` is the time since the registrar's last full sync."""
    proxies = []
    for proxy_id, published in sorted(publisher.proxies.items()):
        ack = published.ack or {}
        refused = ""
        if ack.get("version") == published.version and not ack.get("accepted", True):
            refused = str(ack.get("reason") or "refused")[:1000]
        behind = published.acked_version != published.version
        proxies.append(
            {
                "id": proxy_id,
                "service": services.get(proxy_id, proxy_id),
                "version": published.version,
                "applied_version": published.acked_version or 0,
                "pending_seconds": max(0.0, monotonic - published.published_at) if behind else 0.0,
                "refused": refused,
                # A gateway is not the agent's child (its own unit runs it): whether it runs
                # shows as snapshots applied or not, not as a pid of ours.
                "running": proxy_id not in running or running[proxy_id].get("pid") is not None,
            }
        )
    certificates = []
    for proxy_id, held in sorted((certs.held if certs else {}).items()):
        if held.not_after is None:
            continue
        certificates.append(
            {
                "service": services.get(proxy_id, proxy_id),
                "not_before": _epoch(held.lifecycle.not_before),
                "not_after": _epoch(held.not_after),
                "renew_at": _epoch(held.renew_at),
            }
        )
    return {
        "lease": registrar.lease or "",
        "time": now,
        "last_sync_seconds": max(0.0, since_sync),
        "sync_interval": sync_interval,
        "report_interval": report_interval,
        "connected": registrar.connected,
        "proxies": proxies,
        "certificates": certificates,
    }


class Reporter:
    def __init__(
        self,
        client: RegistryClient,
        *,
        node: str,
        interval: float,
        build: Callable[[float], dict[str, Any]],
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.node = node
        self.interval = interval
        self.build = build
        self.publisher = publisher
        skew = os.environ.get(SKEW_ENV, "")
        self.skew = float(skew) if skew else 0.0
        if self.skew:
            log.warning("%s=%s: reporting a skewed clock (tests only)", SKEW_ENV, skew)
        self.clock = clock
        self._told_unsupported = False

    async def run(self, synced: trio.Event) -> None:
        await synced.wait()
        while True:
            await self.send()
            with trio.move_on_after(self.interval):
                await self.publisher.acked.wait()
                await trio.sleep(MIN_SPACING)

    async def send(self) -> None:
        body = self.build(self.clock() + self.skew)
        if not body["lease"]:
            return
        try:
            await self.client.request("PUT", f"/v1/registry/agents/{self.node}", json=body)
        except APIError as exc:
            if exc.status == 404 and "lease" not in exc.message:
                if not self._told_unsupported:  # an older server: try again, but say it once
                    log.info("the servers do not take agent reports yet (%s)", exc.message)
                    self._told_unsupported = True
            else:
                log.debug("report refused: %s (HTTP %d)", exc.message, exc.status)
        except ServerUnreachable as exc:
            log.debug("report not sent: %s", exc.message)
