"""What the agent says about itself, read from its parts: the document `GET /v1/agent/status`
answers (what `weft agent status` shows) and the one-line summary systemd shows as STATUS=.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._daemon import Agent


def status_line(agent: Agent) -> str:
    proxies = len(agent.publisher.proxies)
    applied = sum(1 for p in agent.publisher.proxies.values() if p.acked_version)
    state = "registered" if agent.registrar.connected else "registry unreachable"
    return f"{len(agent.defs)} services {state}; {applied}/{proxies} proxies configured"


def status_document(agent: Agent) -> dict[str, Any]:
    services = []
    checks = agent.checks.snapshot()
    proxies = agent.supervisor.describe()
    for d in agent.defs:
        entry: dict[str, Any] = {
            "id": d.id,
            "name": d.name,
            "port": d.port,
            "file": d.file,
            "checks": {c.id: checks.get(c.id, {}) for c in d.checks},
        }
        if d.sidecar_port:
            published = agent.publisher.proxies.get(d.id)
            held = agent.certs.held.get(d.id)
            entry["sidecar"] = {
                "port": d.sidecar_port,
                "identity": agent.identity(d),
                "snapshot_version": published.version if published else None,
                "applied_version": published.acked_version if published else None,
                "last_ack": published.ack if published else None,
                "certificate_not_after": held.not_after.isoformat()
                if held and held.not_after
                else None,
                "certificate_serial": held.serial if held else None,
                "certificate_renew_at": held.renew_at.isoformat()
                if held and held.renew_at
                else None,
                "certificate_renewals": held.renewals if held else 0,
                "app_exposed_on": agent.exposed.get(d.id, []),
                "proxy": proxies.get(d.id),
            }
        elif d.gateway:
            published = agent.publisher.proxies.get(d.id)
            entry["gateway"] = {
                "identity": agent.identity(d),
                "snapshot_path": f"/v1/agent/proxy/{d.id}",
                "snapshot_version": published.version if published else None,
                "applied_version": published.acked_version if published else None,
                "last_ack": published.ack if published else None,
            }
        services.append(entry)
    return {
        "node": agent.node,
        "node_address": agent.node_address,
        "servers": list(agent.config.servers),
        "connected": agent.registrar.connected,
        "lease": agent.registrar.lease,
        "ready": agent.ready,
        "trust_domain": agent.trust_domain,
        "metrics": {
            "interval": agent.config.metrics_interval,
            "pushed": agent.metrics.pushed,
            "refused": agent.metrics.refused or None,
        },
        "services": services,
        "intentions": _intentions(agent),
        "refused": dict(agent.registrar.refused),
        "dropped_instances": {
            f"{service}/{reason}": n for (service, reason), n in agent.screen.dropped.items()
        },
    }


def _intentions(agent: Agent) -> dict[str, Any] | None:
    view = agent.intentions.view if hasattr(agent, "intentions") else None
    if view is None:
        return None
    return {
        "default": view.default,
        "count": len(view.intentions),
        "rejected": dict(view.rejected),  # compiled as deny from their source, see logs
    }
