"""Native `/v1/registry/agents`: what each host's agent reports for `weft check`.

Every agent reports, a few times per lease TTL, its clock, its last full sync, what each of
its proxies applied and the validity of the certificates it holds. The record is stored at
`agents/<node>` on the agent's own lease, so a host whose agent died drops out with its
instances. The server stamps each report with its own clock when it arrives: the difference
is the host's clock offset (off by at most the request's one-way delay, milliseconds on a
LAN, far below the bound `weft check` applies).
"""

from __future__ import annotations

import json
from typing import Any

from .._context import Context
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import Forbidden, InvalidInput, NotFound
from .._etcd_types import Put
from .._validate import node_name
from ..web import Request, Response
from ._input import parse_lease
from ._schemas import SCHEMAS

MAX_ITEMS = 1000  # proxies or certificates in one report: far above any host's sidecars
MAX_TEXT = 1024  # ids, names and refusal reasons

_PROXY = {
    "id": F("str"),
    "service": F("str"),
    "version": F("int"),
    "applied_version": F("int"),
    "pending_seconds": F("float"),
    "refused": F("str"),
    "running": F("bool"),
}
_CERT = {
    "service": F("str"),
    "not_before": F("float"),
    "not_after": F("float"),
    "renew_at": F("float"),
}
REPORT_SHAPE = {
    "lease": F("str"),
    "time": F("float"),
    "last_sync_seconds": F("float"),
    "sync_interval": F("float"),
    "report_interval": F("float"),
    "connected": F("bool"),
    "proxies": F("objlist", _PROXY),
    "certificates": F("objlist", _CERT),
}

REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lease", "time"],
    "properties": {
        "lease": {"type": "string", "description": "the agent's lease (hex)"},
        "time": {"type": "number", "description": "the agent's clock, Unix seconds"},
        "last_sync_seconds": {"type": "number", "description": "since its last full sync"},
        "sync_interval": {"type": "number", "description": "its full sync period, seconds"},
        "report_interval": {"type": "number", "description": "how often it reports, seconds"},
        "connected": {"type": "boolean"},
        "proxies": {"type": "array", "items": {"type": "object"}},
        "certificates": {"type": "array", "items": {"type": "object"}},
    },
}
AGENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "time": {"type": "number", "description": "this server's clock, Unix seconds"},
        "agents": {"type": "array", "items": {"type": "object"}},
    },
}
AREA: Area[Context] = Area(
    "native", "agents", {**SCHEMAS, "AgentReport": REPORT_SCHEMA, "AgentReports": AGENTS_SCHEMA}
)
route = AREA.route


def _bounded(data: dict[str, Any]) -> None:
    for name in ("proxies", "certificates"):
        items = data.get(name, [])
        if len(items) > MAX_ITEMS:
            raise InvalidInput(f"{name}: at most {MAX_ITEMS} entries", field=name)
        for n, item in enumerate(items):
            for key, value in item.items():
                if isinstance(value, str) and len(value) > MAX_TEXT:
                    raise InvalidInput(
                        f"{name}[{n}].{key}: at most {MAX_TEXT} characters",
                        field=f"{name}[{n}].{key}",
                    )


@route(
    "PUT",
    "/v1/registry/agents/{node}",
    summary="An agent's report for `weft check` (the node's agent token, or an operator)",
    errors=(400, 404, 503),
    path_params={"node": Param("node", description="The agent's node")},
    body=Body(ref("AgentReport")),
    ok=json_reply("Stored", {"type": "object"}),
)
async def report(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = node_name(request.params["node"], "node")
    ctx.authorizer.write_node(token, node, what="the agent report")
    data = decode(request.json(), REPORT_SHAPE)
    if "lease" not in data or "time" not in data:
        missing = "lease" if "lease" not in data else "time"
        raise InvalidInput(f"{missing}: required", field=missing)
    _bounded(data)
    lease = parse_lease(data["lease"], "lease")
    owner = ctx.catalog.lease_owner(lease)
    if owner is None:
        raise NotFound(f"lease {data['lease']} has expired or was revoked", field="lease")
    assert token is not None  # write_node refuses anonymous callers
    if token.node and owner.get("node") != token.node:
        raise Forbidden(f"lease {data['lease']} belongs to another node")
    received = ctx.clock()
    record = {
        **data,
        "node": node,
        "received_at": received,
        "clock_offset_seconds": data["time"] - received,
        # whose clock the offset is against: the server as the agent addressed it
        "server": request.headers.get("host", "")[:256],
    }
    key = ctx.keys.agent_report(node)
    await ctx.catalog.commit([Put(key, json.dumps(record).encode(), lease)])
    return Response.json({"node": node, "clock_offset_seconds": record["clock_offset_seconds"]})


@route(
    "GET",
    "/v1/registry/agents",
    summary="Every live agent's last report, its age and its lease (what `weft check` reads)",
    auth="read",
    ok=json_reply("Reports", ref("AgentReports")),
)
async def reports(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    now = ctx.clock()
    prefix = ctx.keys.agent_report()
    out = []
    for key, kv in sorted(ctx.mirror.raw.items()):
        if not key.startswith(prefix):
            continue
        try:
            record = json.loads(kv.value)
            lease = parse_lease(str(record.get("lease", "")))
            received = float(record["received_at"])
        except (ValueError, KeyError, TypeError, InvalidInput):
            continue  # written by hand or by another version: not a report we can judge
        record["age_seconds"] = now - received
        record["lease_alive"] = ctx.catalog.lease_owner(lease) is not None
        out.append(record)
    return Response.json({"time": now, "agents": out})
