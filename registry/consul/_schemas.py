"""What the Consul-compatible routes take and answer, as JSON Schema (for the OpenAPI document).

The shapes are Consul's own (`_consul_views.py` renders them); they are written as closed as
Weft really answers, so the schemathesis run notices when a view and its schema part.
"""

from __future__ import annotations

from .._endpoints import Param, Reply, Schema, ref

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
STRINGS: Schema = {"type": "array", "items": STR}
STRMAP: Schema = {"type": "object", "additionalProperties": STR}
STATUS: Schema = {"enum": ["passing", "warning", "critical"]}

# Every Consul answer that carries an index carries these, as Consul's do.
INDEX_HEADERS = ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact")

BLOCKING = (
    Param(
        "index",
        {"type": "integer", "minimum": 0},
        "Block until the view's index is greater than this (a blocking query).",
    ),
    Param(
        "wait",
        {"type": "string", "example": "30s"},
        "Longest wait, a duration (default 5m, cut to the server's max_blocking_wait, 10m).",
    ),
)
TAG = Param(
    "tag", {"type": "array", "items": STR}, "Only instances carrying this tag (repeatable)."
)


def _closed(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


_EMPTY_OBJECT: Schema = {"type": "object", "maxProperties": 0}
WEIGHTS = _closed({"Passing": INT, "Warning": INT})

SCHEMAS: dict[str, Schema] = {
    "ConsulService": _closed(
        {
            "ID": STR,
            "Service": STR,
            "Tags": STRINGS,
            "Address": STR,
            "TaggedAddresses": {"type": "object"},
            "Meta": STRMAP,
            "Port": INT,
            "Weights": WEIGHTS,
            "EnableTagOverride": BOOL,
            "Kind": STR,
            "Namespace": STR,
            "CreateIndex": INT,
            "ModifyIndex": INT,
        },
        # In /v1/agent/service(s) only: a health entry's Service has none, as in Consul.
        {"Datacenter": STR},
    ),
    "ConsulCheck": _closed(
        {
            "Node": STR,
            "CheckID": STR,
            "Name": STR,
            "Status": STATUS,
            "Notes": STR,
            "Output": STR,
            "ServiceID": STR,
            "ServiceName": STR,
            "ServiceTags": STRINGS,
            "Type": STR,
            "Namespace": STR,
            "CreateIndex": INT,
            "ModifyIndex": INT,
        },
        # The node-maintenance pseudo-check has no definition.
        {"Definition": {"type": "object"}},
    ),
    "ConsulNode": _closed(
        {
            "ID": STR,
            "Node": STR,
            "Address": STR,
            "Datacenter": STR,
            "TaggedAddresses": STRMAP,
            "Meta": STRMAP,
        },
        # In /v1/catalog/nodes only.
        {"CreateIndex": INT, "ModifyIndex": INT},
    ),
    "ConsulCatalogService": _closed(
        {
            "ID": STR,
            "Node": STR,
            "Address": STR,
            "Datacenter": STR,
            "TaggedAddresses": STRMAP,
            "NodeMeta": STRMAP,
            "CreateIndex": INT,
            "ModifyIndex": INT,
            "ServiceAddress": STR,
            "ServiceEnableTagOverride": BOOL,
            "ServiceID": STR,
            "ServiceName": STR,
            "ServicePort": INT,
            "ServiceMeta": STRMAP,
            "ServiceTaggedAddresses": {"type": "object"},
            "ServiceTags": STRINGS,
            "ServiceKind": STR,
            "ServiceProxy": {"type": "object"},
            "ServiceConnect": {"type": "object"},
            "ServiceWeights": WEIGHTS,
            "Namespace": STR,
        }
    ),
    "ConsulHealthEntry": _closed(
        {
            "Node": ref("ConsulNode"),
            "Service": ref("ConsulService"),
            "Checks": {"type": "array", "items": ref("ConsulCheck")},
        }
    ),
    "ConsulKVEntry": _closed(
        {
            "LockIndex": INT,
            "Key": STR,
            "Flags": {"type": "integer", "minimum": 0},
            "Value": {"type": ["string", "null"], "contentEncoding": "base64"},
            "CreateIndex": INT,
            "ModifyIndex": INT,
        },
        # While a session holds the key's lock.
        {"Session": STR},
    ),
    "ConsulAgentSelf": _closed(
        {
            "Config": _closed(
                {
                    "Datacenter": STR,
                    "NodeName": STR,
                    "NodeID": STR,
                    "Server": BOOL,
                    "Version": STR,
                    "Revision": STR,
                    "PrimaryDatacenter": STR,
                }
            ),
            "Member": _closed(
                {"Name": STR, "Addr": STR, "Port": INT, "Tags": STRMAP, "Status": INT}
            ),
            "Meta": {"type": "object"},
            "DebugConfig": {"type": "object"},
            "Coord": {"type": "null"},
            "xDS": {"type": "null"},
        }
    ),
    "ConsulSession": _closed(
        {
            "ID": STR,
            "Name": STR,
            "Node": STR,
            "LockDelay": {"type": "integer", "minimum": 0, "description": "nanoseconds"},
            "Behavior": {"enum": ["release", "delete"]},
            "TTL": STR,
            "NodeChecks": STRINGS,
            "ServiceChecks": {
                "type": ["array", "null"],
                "items": _closed({"ID": STR, "Namespace": STR}),
            },
            "Checks": STRINGS,
            "Namespace": STR,
            "CreateIndex": INT,
            "ModifyIndex": INT,
        }
    ),
    "ConsulMember": _closed({"Name": STR, "Addr": STR, "Port": INT, "Tags": STRMAP, "Status": INT}),
    "ConsulTokenSelf": _closed(
        {
            "AccessorID": STR,
            "SecretID": STR,
            "Description": STR,
            "Policies": {"type": "array", "items": _closed({"ID": STR, "Name": STR})},
            "NodeIdentities": {
                "type": "array",
                "items": _closed({"NodeName": STR, "Datacenter": STR}),
            },
            "ServiceIdentities": {"type": "array", "items": _closed({"ServiceName": STR})},
            "Local": BOOL,
            "CreateTime": STR,
            "Hash": STR,
            "CreateIndex": INT,
            "ModifyIndex": INT,
        }
    ),
    "ConsulTxnAnswer": _closed(
        {
            "Results": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "KV": ref("ConsulKVEntry"),
                        # Empty when the operation's service or check is gone by then.
                        "Service": {"anyOf": [ref("ConsulService"), _EMPTY_OBJECT]},
                        "Check": {"anyOf": [ref("ConsulCheck"), _EMPTY_OBJECT]},
                    },
                },
            },
            "Errors": {
                "type": ["array", "null"],
                "items": _closed({"OpIndex": INT, "What": STR}),
            },
        }
    ),
    "ConsulRegistration": {
        "type": "object",
        "description": (
            "Consul's service definition; keys are matched without regard to case, fields Weft "
            "has no use for (Connect, Proxy, ...) are accepted and ignored, others refused."
        ),
        "required": ["Name"],
        "properties": {
            "Name": STR,
            "ID": STR,
            "Tags": STRINGS,
            "Address": STR,
            "Port": INT,
            "Meta": STRMAP,
            "Check": {"type": "object"},
            "Checks": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def index_json(description: str, schema: Schema) -> Reply:
    """A JSON answer with Consul's index headers."""
    return Reply(description, {"application/json": schema}, INDEX_HEADERS)


# Consul answers a write with an empty 200 (KV writes answer true/false).
EMPTY = Reply("Done (an empty body, as Consul answers)", {"text/plain": {"type": "string"}})
