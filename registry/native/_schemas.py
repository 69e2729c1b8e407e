"""What the native routes take and answer, as JSON Schema (for the OpenAPI document)."""

from __future__ import annotations

from .._endpoints import Param, Schema, ref

_ref = ref
OBJECT: Schema = {"type": "object"}
INDEX_HEADERS = ("X-Weft-Index", "X-Consul-Index")
BLOCKING = (
    Param(
        "index",
        {"type": "integer", "minimum": 0},
        "Block until the view's index is greater than this (a blocking query).",
    ),
    Param("wait", {"type": "string", "example": "30s"}, "Longest wait (default 5m, max 10m)."),
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
    "Instance": {
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "id": {"type": "string"},
            "node": {"type": "string"},
            "address": {"type": "string"},
            "port": {"type": "integer"},
            "status": {"enum": ["passing", "warning", "critical", "maintenance"]},
            "maintenance": {"type": "boolean"},
            "lease": {"type": ["string", "null"]},
            "checks": {"type": "array", "items": {"type": "object"}},
        },
    },
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
        },
    },
    "Token": {
        "type": "object",
        "properties": {
            "accessor": {"type": "string"},
            "role": {"type": "string"},
            "node": {"type": "string"},
            "source": {"type": "string"},
            "description": {"type": "string"},
            "secret": {"type": "string", "description": "only in the answer to POST /v1/tokens"},
        },
    },
    "CheckUpdate": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["passing", "warning", "critical"]},
            "output": {"type": "string"},
        },
    },
    "ServiceSummary": {"type": "object"},
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
    "Check": {"type": "object"},
    "MaintenanceSpec": {
        "type": "object",
        "required": ["enable"],
        "properties": {"enable": {"type": "boolean"}, "reason": {"type": "string"}},
    },
    "LeaseSpec": {"type": "object", "properties": {"ttl": {"type": "integer"}}},
}
