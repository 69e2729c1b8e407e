"""What the native routes take and answer, as JSON Schema (for the OpenAPI document)."""

from __future__ import annotations

from .._endpoints import Param, Schema, ref

_ref = ref
OBJECT: Schema = {"type": "object"}
_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}


def _closed(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


INDEX_HEADERS = ("X-Weft-Index", "X-Consul-Index")
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

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                    "status": {"type": "integer"},
                },
            }
        },
    },
    "CheckSpec": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "ttl": {"type": "string", "example": "30s"},
            "http": {"type": "string", "format": "uri"},
            "method": {"type": "string"},
            "header": {"type": "object"},
            "tls_skip_verify": {"type": "boolean"},
            "tcp": {"type": "string", "example": "host:port"},
            "args": {"type": "array", "items": {"type": "string"}},
            "interval": {"type": "string"},
            "timeout": {"type": "string"},
            "deregister_critical_after": {"type": "string"},
            "success_before_passing": {"type": "integer"},
            "failures_before_warning": {"type": "integer"},
            "failures_before_critical": {"type": "integer"},
            "status": {"enum": ["passing", "warning", "critical"]},
            "notes": {"type": "string"},
        },
    },
    "InstanceSpec": {
        "type": "object",
        "additionalProperties": False,
        "required": ["service", "port"],
        "properties": {
            "service": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
            "id": {"type": "string"},
            "node": {"type": "string"},
            "namespace": {"type": "string"},
            "address": {"type": "string"},
            "node_address": {"type": "string"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "protocol": {"enum": ["http", "http2", "grpc", "tcp"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "weights": {
                "type": "object",
                "properties": {"passing": {"type": "integer"}, "warning": {"type": "integer"}},
            },
            "sidecar_port": {"type": "integer"},
            "identity": {"type": "string"},
            "source": {"type": "string"},
            "kind": {"type": "string"},
            "checks": {"type": "array", "items": _ref("CheckSpec")},
            "lease": {
                "type": "string",
                "description": "hex lease ID from POST /v1/registry/leases",
            },
        },
    },
    "Instance": _closed(
        {
            "service": _STR,
            "id": _STR,
            "node": _STR,
            "namespace": _STR,
            "address": _STR,
            "node_address": _STR,
            "port": _INT,
            "protocol": _STR,
            "tags": {"type": "array", "items": _STR},
            "meta": {"type": "object", "additionalProperties": _STR},
            "weights": _closed({"passing": _INT, "warning": _INT}),
            "sidecar_port": _INT,
            "identity": _STR,
            "source": _STR,
            "kind": _STR,
            "lease": {"type": ["string", "null"], "description": "hex lease ID"},
            "create_index": _INT,
            "modify_index": _INT,
            "status": {"enum": ["passing", "warning", "critical", "maintenance"]},
            "maintenance": {"type": "boolean"},
        },
        # Views with their checks (all but the service list's counts).
        {"checks": {"type": "array", "items": _ref("Check")}, "maintenance_reason": _STR},
    ),
    "Batch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "upserts": {"type": "array", "items": _ref("InstanceSpec")},
            "deletes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "service": {"type": "string"},
                        "node": {"type": "string"},
                        "id": {"type": "string"},
                    },
                },
            },
        },
    },
    "Lease": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "ttl": {"type": "integer"}},
    },
    "TokenSpec": {
        "type": "object",
        "additionalProperties": False,
        "required": ["role"],
        "properties": {
            "role": {"enum": ["operator", "agent", "adapter", "read"]},
            "node": {"type": "string"},
            "source": {"type": "string"},
            "description": {"type": "string"},
            "key_prefix": {"type": "object", "additionalProperties": {"type": "string"}},
            "key": {"type": "object", "additionalProperties": {"type": "string"}},
            "services": {
                "type": "array",
                "items": {"type": "string"},
                "description": "agent tokens: the services it may register and sign for",
            },
            "service_prefix": {
                "type": "array",
                "items": {"type": "string"},
                "description": 'agent tokens: name prefixes it may act for ("" is every one)',
            },
        },
    },
    "TokenServices": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "services": {"type": "array", "items": {"type": "string"}},
            "service_prefix": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Token": _closed(
        {
            "accessor": _STR,
            "role": {"enum": ["operator", "agent", "adapter", "read"]},
            "node": _STR,
            "source": _STR,
            "description": _STR,
            "created_at": {"type": "number", "description": "Unix time"},
        },
        {
            "key_prefix": {"type": "object", "additionalProperties": _STR},
            "key": {"type": "object", "additionalProperties": _STR},
            "services": {"type": "array", "items": _STR},
            "service_prefix": {"type": "array", "items": _STR},
            "warning": _STR,
            "secret": {"type": "string", "description": "only in the answer to POST /v1/tokens"},
            "revoked": {"const": True, "description": "only in the answer to a revoke"},
        },
    ),
    "CheckUpdate": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["passing", "warning", "critical"]},
            "output": {"type": "string"},
        },
    },
    "ServiceSummary": _closed(
        {
            "name": _STR,
            "instances": _INT,
            "passing": _INT,
            "warning": _INT,
            "critical": _INT,
            "maintenance": _INT,
            "tags": {"type": "array", "items": _STR},
        }
    ),
    "Service": {
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "instances": {"type": "array", "items": _ref("Instance")},
        },
    },
    "BatchResult": {
        "type": "object",
        "properties": {
            "upserted": {"type": "integer"},
            "deleted": {"type": "integer"},
            "transactions": {"type": "integer"},
        },
    },
    "Check": _closed(
        {
            "id": _STR,
            "name": _STR,
            "type": _STR,
            "status": {"enum": ["passing", "warning", "critical", "maintenance"]},
            "output": _STR,
            "notes": _STR,
            "runner": _STR,
            "status_since": {"type": "number"},
        },
        # Each only when set.
        {
            "ttl": {"type": "number"},
            "http": _STR,
            "tcp": _STR,
            "interval": {"type": "number"},
            "timeout": {"type": "number"},
            "deregister_critical_after": {"type": "number"},
            "args": {"type": "array", "items": _STR},
        },
    ),
    "MaintenanceSpec": {
        "type": "object",
        "required": ["enable"],
        "properties": {"enable": {"type": "boolean"}, "reason": {"type": "string"}},
    },
    "LeaseSpec": {"type": "object", "properties": {"ttl": {"type": "integer"}}},
}
