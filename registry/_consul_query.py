"""What every Consul read shares, around its handler: `?dc=`, `?filter=` and `?node-meta=`.

- `?dc=` naming another datacenter answers 500 "No path to datacenter", as a Consul server
  with no route to it does (a silently local answer would hand out the wrong instances).
- `?filter=` (see `_filter.py`) is parsed before the handler runs, so a bad expression is a
  400 even on a blocking query, and applied to the records the handler rendered.
- `?node-meta=key:value` (repeatable) keeps records whose node has that meta.

The field names a filter may start with are those the views render (taken from rendering a
sample record), so the filter language and the JSON shapes cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from . import _consul_views as views
from ._errors import InvalidInput, RegistryError
from ._filter import parse
from ._model import Check, Instance
from .web import Request, Response


class NoPathToDatacenter(RegistryError):
    status = 500


def _sample_fields() -> dict[str, tuple[str, ...]]:
    inst = Instance(service="s", id="s", node="n")
    check = tuple(views.check_json(Check(id="c", node="n", service="s", instance="s"), inst))
    service = (*views.service_json(inst), "Datacenter")
    node = ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex")
    catalog_service = (
        *node,
        "NodeMeta",
        "ModifyIndex",
        "ServiceAddress",
        "ServiceEnableTagOverride",
        "ServiceID",
        "ServiceName",
        "ServicePort",
        "ServiceMeta",
        "ServiceTaggedAddresses",
        "ServiceTags",
        "ServiceKind",
        "ServiceProxy",
        "ServiceConnect",
        "ServiceWeights",
        "Namespace",
    )
    return {
        "check": check,
        "service": service,
        "node": (*node, "ModifyIndex"),
        "catalog_service": catalog_service,
        "health_service": ("Node", "Service", "Checks"),
    }


_FIELDS = _sample_fields()

# route pattern -> (the fields of one record, whether the answer is a map of records)
FILTERABLE: dict[str, tuple[tuple[str, ...], bool]] = {
    "/v1/catalog/service/{name}": (_FIELDS["catalog_service"], False),
    "/v1/catalog/connect/{name}": (_FIELDS["catalog_service"], False),
    "/v1/catalog/nodes": (_FIELDS["node"], False),
    "/v1/health/service/{name}": (_FIELDS["health_service"], False),
    "/v1/health/connect/{name}": (_FIELDS["health_service"], False),
    "/v1/health/checks/{name}": (_FIELDS["check"], False),
    "/v1/health/state/{state}": (_FIELDS["check"], False),
    "/v1/health/node/{node}": (_FIELDS["check"], False),
    "/v1/agent/services": (_FIELDS["service"], True),
    "/v1/agent/checks": (_FIELDS["check"], True),
    "/v1/connect/intentions": (
        (
            "ID",
            "Description",
            "SourceNS",
            "SourceName",
            "DestinationNS",
            "DestinationName",
            "SourceType",
            "Action",
            "Permissions",
            "Meta",
            "Precedence",
            "CreatedAt",
            "UpdatedAt",
            "CreateIndex",
            "ModifyIndex",
        ),
        False,
    ),
}

# route pattern -> where a record keeps its node's meta
NODE_META: dict[str, tuple[str, ...]] = {
    "/v1/catalog/service/{name}": ("NodeMeta",),
    "/v1/catalog/nodes": ("Meta",),
    "/v1/health/service/{name}": ("Node", "Meta"),
}


# Routes whose answer is not a list or map of the records a filter selects: the handler applies
# `record_filter` itself (the services map of the instances that match; a node's services).
HANDLER_FILTERED: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "/v1/catalog/services": (_FIELDS["catalog_service"], ("NodeMeta",)),
    "/v1/catalog/node/{node}": (_FIELDS["service"], None),
}


def record_filter(request: Request, pattern: str) -> Callable[[Any], bool] | None:
    """The `?filter=` and `?node-meta=` of a HANDLER_FILTERED route as one predicate over its
    records, or None when the request asks for neither."""
    fields, meta_path = HANDLER_FILTERED[pattern]
    raw = request.arg("filter")
    predicate = parse(raw, fields) if raw is not None else None
    wanted = _node_meta(request) if meta_path is not None else []
    if predicate is None and not wanted:
        return None

    def keep(record: Any) -> bool:
        meta = _dig(record, meta_path or ())
        if not all(isinstance(meta, dict) and meta.get(k) == v for k, v in wanted):
            return False
        return predicate is None or predicate(record)

    return keep


def _node_meta(request: Request) -> list[tuple[str, str]]:
    wanted = []
    for raw in request.query.get("node-meta", []):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise InvalidInput(
                f"node-meta: {raw!r} is not key:value (e.g. ?node-meta=rack:r1)",
                field="node-meta",
            )
        wanted.append((key, value))
    return wanted


def _dig(record: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        record = record.get(name, {}) if isinstance(record, dict) else {}
    return record


async def around(
    request: Request,
    pattern: str,
    datacenter: str,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    """Run a Consul route's handler with the shared query parameters applied."""
    dc = request.arg("dc")
    if dc and dc != datacenter:
        raise NoPathToDatacenter("No path to datacenter", field="dc")
    if pattern in HANDLER_FILTERED:
        record_filter(request, pattern)  # a bad expression is a 400 before any blocking wait
        return await handler(request)
    filterable = FILTERABLE.get(pattern)
    raw_filter = request.arg("filter")
    predicate = None
    if raw_filter is not None and filterable is not None:
        predicate = parse(raw_filter, filterable[0])
    meta_path = NODE_META.get(pattern)
    wanted = _node_meta(request) if meta_path is not None else []
    response = await handler(request)
    if (predicate is None and not wanted) or response.status != 200:
        return response
    data = json.loads(response.body)

    def keep(record: Any) -> bool:
        if wanted:
            meta = _dig(record, meta_path or ())
            if not all(isinstance(meta, dict) and meta.get(k) == v for k, v in wanted):
                return False
        return predicate is None or predicate(record)

    if isinstance(data, dict) and filterable is not None and filterable[1]:
        data = {k: v for k, v in data.items() if keep(v)}
    elif isinstance(data, list):
        data = [r for r in data if keep(r)]
    response.body = json.dumps(data, separators=(",", ":")).encode()
    return response
