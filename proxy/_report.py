"""What a running proxy reports about itself: the `/config` document and the `/metrics` gauges."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ._runtime import Runtime


def gauges(runtime: Runtime) -> dict[str, Any]:
    """Gauges for /metrics: snapshot version, certificate expiry, endpoints by state."""
    out: dict[str, Any] = {}
    config = runtime.config
    if config is None:
        return out
    out["snapshot_version"] = (
        "Version of the snapshot in use",
        [],
        [[config.snapshot.version]],
    )
    out["certificate_expiry_timestamp_seconds"] = (
        "When this proxy's certificate expires (Unix time)",
        [],
        [[config.tls.leaf.not_after]],
    )
    now = trio.current_time()
    rows = []
    for name, cluster in runtime.clusters.items():
        counts = cluster.balancer.counts(now)
        rows.append([name, "available", counts["available"]])
        rows.append([name, "ejected", counts["ejected"]])
    out["endpoints"] = ("Endpoints per upstream by state", ["upstream", "state"], rows)
    return out


def view(runtime: Runtime) -> dict[str, Any]:
    """What `/config` shows."""
    config = runtime.config
    now = trio.current_time()
    upstreams = {}
    for name, cluster in runtime.clusters.items():
        endpoints = []
        for ep in cluster.balancer.endpoints:
            pool = cluster.pools.get(ep.key)
            endpoints.append(
                {
                    "endpoint": ep.key,
                    "weight": ep.weight,
                    "state": ep.accrual.state.value,
                    "available": ep.accrual.available(now),
                    "pending": ep.pending,
                    "picks": ep.picks,
                    "latency_estimate_ms": round(ep.ewma.current(now) * 1000, 3),
                    "idle_connections": len(pool.idle) if pool else 0,
                    "active_connections": pool.active if pool else 0,
                }
            )
        entry: dict[str, Any] = {"balancer": cluster.balancer.strategy, "endpoints": endpoints}
        budget = runtime.budgets.get(name)
        if budget is not None:
            # Retries the budget would allow now (deposits and withdrawals in its ttl window).
            entry["retry_budget_available"] = int(budget.balance(now) // budget.withdraw_cost)
        upstreams[name] = entry
    certificate = None
    if config is not None:
        leaf = config.tls.leaf
        certificate = {
            "identity": str(config.snapshot.identity),
            "uris": list(leaf.uris),
            "not_before": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(leaf.not_before)),
            "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(leaf.not_after)),
            "expires_in_seconds": round(leaf.not_after - time.time()),
            "files": {
                "cert": config.tls.files.cert,
                "key": config.tls.files.key,
                "bundle": config.tls.files.bundle,
            },
        }
    return {
        "version": config.snapshot.version if config else None,
        "digest": config.snapshot.digest if config else None,
        "applied": runtime.applied.as_dict() if runtime.applied else None,
        "last_result": runtime.last_result.as_dict() if runtime.last_result else None,
        "draining": runtime.draining,
        "requests": runtime.metrics.total_requests(),
        "listeners": runtime.addresses(),
        "certificate": certificate,
        "upstreams": upstreams,
        "snapshot": config.snapshot.document if config else None,
    }
