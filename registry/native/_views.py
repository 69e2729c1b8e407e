"""Native JSON views of instances and checks (snake_case, status folded in)."""

from __future__ import annotations

import math
from typing import Any

from .._consul_views import maintenance_check
from .._context import Context
from .._model import Check, Instance, Status, worst


def check_view(check: Check) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": check.id,
        "name": check.name,
        "type": check.type,
        "status": str(check.status),
        "output": check.output,
        "notes": check.notes,
        "runner": check.runner,
        "status_since": check.status_since,
    }
    for name in ("ttl", "http", "tcp", "interval", "timeout", "deregister_critical_after"):
        value = getattr(check, name)
        # A NaN stored by an older version would make the whole answer invalid JSON.
        if value and (not isinstance(value, float) or math.isfinite(value)):
            out[name] = value
    if check.args:
        out["args"] = list(check.args)
    return out


def instance_view(ctx: Context, inst: Instance, *, with_checks: bool = True) -> dict[str, Any]:
    checks = ctx.mirror.checks_of(inst.service, inst.node, inst.id)
    in_maint = inst.node in ctx.mirror.maint
    statuses = [c.status for c in checks.values()]
    if in_maint:
        statuses.append(Status.MAINTENANCE)
    out: dict[str, Any] = {
        "service": inst.service,
        "id": inst.id,
        "node": inst.node,
        "namespace": inst.namespace,
        "address": inst.address or inst.node_address,
        "node_address": inst.node_address,
        "port": inst.port,
        "protocol": inst.protocol,
        "tags": list(inst.tags),
        "meta": dict(inst.meta),
        "weights": {"passing": inst.weights.passing, "warning": inst.weights.warning},
        "sidecar_port": inst.sidecar_port,
        "identity": inst.identity,
        "source": inst.source,
        "kind": inst.kind,
        "lease": f"{inst.lease:x}" if inst.lease else None,
        "create_index": inst.create_index,
        "modify_index": inst.modify_index,
        "status": str(worst(statuses)),
        "maintenance": in_maint,
    }
    if with_checks:
        out["checks"] = [check_view(c) for c in checks.values()]
        maint = maintenance_check(ctx.mirror, inst.node)
        if maint is not None:
            out["maintenance_reason"] = maint["Notes"]
    return out
