"""The OpenAPI 3.1 document of the registry's HTTP API, served at `/v1/openapi.json`."""

from __future__ import annotations

from typing import Any

import weft


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "Invalid input; `error.field` names the field"),
    "403": _json(_ref("Error"), "The token may not do this"),
    "404": _json(_ref("Error"), "Not found"),
    "413": {"description": "Request body too large"},
    "503": _json(_ref("Error"), "etcd unavailable"),
}

_BLOCKING = [
    {
        "name": "index",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0},
        "description": "Block until the view's index is greater than this (blocking query).",
    },
    {
        "name": "wait",
        "in": "query",
        "schema": {"type": "string", "example": "30s"},
        "description": "Longest time to block (default 5m, max 10m).",
    },
]

_TOKEN = {
    "name": "X-Consul-Token",
    "in": "header",
    "schema": {"type": "string"},
    "description": "Access token (also Authorization: Bearer, or ?token=).",
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    tag: str = "registry",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": [_TOKEN, *(params or [])],
        "responses": {**responses, **_ERRORS},
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


SCHEMAS: dict[str, Any] = {
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
            "protocol": {"enum": ["http", "tcp"]},
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
    "ResourceBatch": {
        "type": "object",
        "required": ["resources"],
        "additionalProperties": False,
        "properties": {
            "resources": {
                "type": "array",
                "maxItems": 128,
                "items": _ref("Resource"),
                "description": "validated as a whole, stored in one transaction or not at all",
            },
            "dry_run": {"type": "boolean"},
        },
    },
    "Resource": {
        "type": "object",
        "description": "A traffic resource (docs/traffic.md): Route, ServiceDefaults or Subset",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "weft.dev/v1"},
            "kind": {"enum": ["Route", "ServiceDefaults", "Subset"]},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "labels": {"type": "object"},
                    "revision": {"type": "integer", "description": "in answers only"},
                    "createRevision": {"type": "integer", "description": "in answers only"},
                },
            },
            "spec": {"type": "object"},
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
}


def document(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    ok = {"200": _json({"type": "object"})}
    paths: dict[str, Any] = {
        "/v1/registry/services": {
            "get": _op("Services with instance counts by health", ok, params=_BLOCKING)
        },
        "/v1/registry/services/{name}": {
            "get": _op(
                "Instances of a service with their checks",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "service": {"type": "string"},
                                "instances": {"type": "array", "items": _ref("Instance")},
                            },
                        }
                    )
                },
                params=[
                    _path_param("name"),
                    *_BLOCKING,
                    {"name": "passing", "in": "query", "schema": {"type": "boolean"}},
                ],
            )
        },
        "/v1/registry/instances": {
            "get": _op(
                "Instances, filtered by node and/or source",
                {"200": _json({"type": "array", "items": _ref("Instance")})},
                params=[
                    {"name": "node", "in": "query", "schema": {"type": "string"}},
                    {"name": "source", "in": "query", "schema": {"type": "string"}},
                ],
            ),
            "put": _op(
                "Register (or update) an instance",
                {"200": _json(_ref("Instance"))},
                body="InstanceSpec",
            ),
        },
        "/v1/registry/instances/{service}/{node}/{id}": {
            "delete": _op(
                "Deregister an instance and its checks",
                ok,
                params=[_path_param("service"), _path_param("node"), _path_param("id")],
            )
        },
        "/v1/registry/batch": {
            "post": _op(
                "Apply many registrations and deregistrations in few etcd transactions",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "upserted": {"type": "integer"},
                                "deleted": {"type": "integer"},
                                "transactions": {"type": "integer"},
                            },
                        }
                    )
                },
                body="Batch",
            )
        },
        "/v1/registry/checks/{node}/{check_id}": {
            "put": _op(
                "Report a check's status",
                ok,
                body="CheckUpdate",
                params=[_path_param("node"), _path_param("check_id")],
            )
        },
        "/v1/registry/maintenance/{node}": {
            "put": _op("Put a node into or out of maintenance", ok, params=[_path_param("node")])
        },
        "/v1/registry/leases": {"post": _op("Grant a lease", {"200": _json(_ref("Lease"))})},
        "/v1/registry/leases/{lease}": {
            "put": _op(
                "Keep a lease alive", {"200": _json(_ref("Lease"))}, params=[_path_param("lease")]
            ),
            "delete": _op(
                "Revoke a lease: its instances leave at once", ok, params=[_path_param("lease")]
            ),
        },
        "/v1/tokens": {
            "get": _op(
                "List tokens (operator)",
                {"200": _json({"type": "array", "items": _ref("Token")})},
                tag="tokens",
            ),
            "post": _op(
                "Create a token (operator)",
                {"200": _json(_ref("Token"))},
                body="TokenSpec",
                tag="tokens",
            ),
        },
        "/v1/tokens/self": {
            "get": _op("The calling token", {"200": _json(_ref("Token"))}, tag="tokens")
        },
        "/v1/tokens/{accessor}": {
            "delete": _op(
                "Revoke a token (operator)", ok, params=[_path_param("accessor")], tag="tokens"
            )
        },
        "/v1/resources": {
            "get": _op(
                "Stored traffic resources (?kind= to filter)",
                ok,
                params=[*_BLOCKING, {"name": "kind", "in": "query", "schema": {"type": "string"}}],
                tag="traffic",
            ),
            "post": _op(
                "Apply a batch of traffic resources (operator); 400 lists every problem",
                ok,
                body="ResourceBatch",
                tag="traffic",
            ),
        },
        "/v1/resources/{kind}/{name}": {
            "get": _op(
                "One traffic resource",
                {"200": _json(_ref("Resource"))},
                params=[_path_param("kind"), _path_param("name")],
                tag="traffic",
            ),
            "delete": _op(
                "Delete a traffic resource (operator)",
                ok,
                params=[_path_param("kind"), _path_param("name")],
                tag="traffic",
            ),
        },
        "/v1/weft/health": {
            "get": {
                "summary": "Server readiness",
                "tags": ["server"],
                "responses": {"200": _json({"type": "object"}), "503": _json({"type": "object"})},
            }
        },
    }
    consul = {
        "/v1/agent/self": "get",
        "/v1/agent/services": "get",
        "/v1/agent/checks": "get",
        "/v1/agent/service/register": "put",
        "/v1/agent/service/deregister/{id}": "put",
        "/v1/agent/check/pass/{check_id}": "put",
        "/v1/agent/check/warn/{check_id}": "put",
        "/v1/agent/check/fail/{check_id}": "put",
        "/v1/agent/maintenance": "put",
        "/v1/catalog/services": "get",
        "/v1/catalog/service/{name}": "get",
        "/v1/catalog/nodes": "get",
        "/v1/health/service/{name}": "get",
        "/v1/health/state/{state}": "get",
        "/v1/kv/{key}": "get",
        "/v1/config/{kind}": "get",
        "/v1/config/{kind}/{name}": "get",
    }
    for path, method in consul.items():
        paths.setdefault(path, {})[method] = {
            "summary": "Consul-compatible (see Consul's API documentation for shapes)",
            "tags": ["consul"],
            "responses": {"200": {"description": "OK; X-Consul-Index set"}},
        }
    paths.update(extra_paths or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "Weft registry API", "version": weft.__version__},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
