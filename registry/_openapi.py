"""The OpenAPI 3.1 document of the registry's HTTP API, served at `/v1/openapi.json`.

Rendered from the routes the router holds (each carries its `Endpoint` declaration), so the
document names exactly the operations that are served: a route without a declaration is an
error here, not a gap in the document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import weft

from ._endpoints import Endpoint, Param, Schema, ref
from .web._routing import Route

_ERROR_TEXT = {
    400: "Invalid input; the message names the field",
    403: "The token may not do this (or none was sent, or it is not recognised)",
    404: "Not found",
    409: "A concurrent change won; read again and retry",
    413: "Request body too large",
    429: "Too many requests; Retry-After says when to try again",
    503: "etcd is unavailable (or the CA has no key-encryption key)",
}

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "field", "status"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "status": {"type": "integer"},
            },
        }
    },
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "ConsulToken": {"type": "apiKey", "in": "header", "name": "X-Consul-Token"},
    "BearerToken": {"type": "http", "scheme": "bearer"},
    "QueryToken": {"type": "apiKey", "in": "query", "name": "token"},
}
_TOKEN: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]

# The router's `{key:path}` matches the rest of the path; OpenAPI has only `{key}`.
_PATH_KIND = ":path}"


def openapi_path(pattern: str) -> str:
    return pattern.replace(_PATH_KIND, "}")


def _param(param: Param, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "in": where, "schema": param.schema}
    if where == "path" or param.required:
        out["required"] = True
    if param.description:
        out["description"] = param.description
    if param.schema.get("type") == "array":
        out["style"], out["explode"] = "form", True
    return out


def _path_params(endpoint: Endpoint[Any]) -> list[dict[str, Any]]:
    out = []
    for name in endpoint.path_names():
        declared = endpoint.path_params.get(name)
        schema: Schema = {"type": "string", "minLength": 1}
        if declared is not None and declared.schema != {"type": "string"}:
            schema = declared.schema
        param = Param(name, schema, declared.description if declared else "")
        out.append(_param(param, "path"))
    return out


def _error(endpoint: Endpoint[Any], status: int) -> dict[str, Any]:
    if endpoint.api == "consul":
        # Consul answers errors as plain text (an absent KV key: an empty body).
        content = {"text/plain": {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": ref("Error")}}
    out: dict[str, Any] = {"description": _ERROR_TEXT.get(status, "Error"), "content": content}
    if status == 429:
        out["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
    return out


def operation(endpoint: Endpoint[Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, reply in sorted(endpoint.replies.items()):
        rendered: dict[str, Any] = {"description": reply.description}
        if reply.content:
            rendered["content"] = {
                media: {"schema": schema} for media, schema in reply.content.items()
            }
        if reply.headers:
            rendered["headers"] = {
                name: {"required": True, "schema": {"type": "string"}} for name in reply.headers
            }
        responses[str(status)] = rendered
    for status in sorted(endpoint.errors):
        responses.setdefault(str(status), _error(endpoint, status))
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": [
            *_path_params(endpoint),
            *(_param(p, "query") for p in endpoint.query),
        ],
        "responses": responses,
        "security": [] if endpoint.auth == "open" else _TOKEN,
    }
    if endpoint.body is not None:
        body: dict[str, Any] = {
            "required": endpoint.body.required,
            "content": {endpoint.body.content_type: {"schema": endpoint.body.schema}},
        }
        if endpoint.body.description:
            body["description"] = endpoint.body.description
        op["requestBody"] = body
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document of every route given; each must carry its `Endpoint`."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Schema] = {"Error": ERROR_SCHEMA}
    seen_ids: set[str] = set()
    for route in routes:
        endpoint = route.endpoint
        if not isinstance(endpoint, Endpoint):
            raise ValueError(f"{route.method} {route.pattern} has no endpoint declaration")
        op = operation(endpoint)
        if op["operationId"] in seen_ids:
            op["operationId"] = f"{endpoint.tag}_{op['operationId']}"
        seen_ids.add(op["operationId"])
        paths.setdefault(openapi_path(endpoint.path), {})[endpoint.method.lower()] = op
        schemas.update(endpoint.schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Weft registry API",
            "version": weft.__version__,
            "description": (
                "The native API (`/v1/registry`, `/v1/tokens`, `/v1/ca`) answers errors as "
                '`{"error": {"message", "field", "status"}}`; the Consul-compatible routes '
                "answer them as plain text, as Consul does."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }
