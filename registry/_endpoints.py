"""Route declarations: what each endpoint is, read by the router and the OpenAPI generator.

An API area (Consul's agent endpoints, the native leases, the CA, ...) is an `Area`: a list
of `Endpoint`s, each a module-level handler plus what it takes (path and query parameters, a
request body) and what it answers (each status with its body). `Area.mount` hands the
endpoints to the router; `_openapi.document` renders the same objects, so the document can
only describe what is routed.

Handlers take the area's state first (the registry `Context`, or the CA extension) and the
request second, so they are plain functions a reader can find by name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from .web import Request, Response, Router

Schema = dict[str, Any]
# Error shapes: Consul routes answer errors as plain text (as Consul does), the others as
# {"error": {"message", "field", "status"}}.
API = Literal["consul", "native", "ca", "server"]
# open: no token needed; read: a token that may read (or none with anonymous reads);
# token: a token with the right to do this (which one the summary says).
Auth = Literal["open", "read", "token"]

S = TypeVar("S")
Handler = Callable[[S, Request], Awaitable[Response]]

_PARAM = re.compile(r"\{(\w+)(?::path)?\}")


@dataclass(frozen=True)
class Param:
    """A query (or path) parameter."""

    name: str
    schema: Schema = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: its media type and schema."""

    schema: Schema
    content_type: str = "application/json"
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """One answer: its body by media type (none: no body) and the headers it always carries."""

    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: tuple[str, ...] = ()


def json_reply(description: str, schema: Schema, *, headers: tuple[str, ...] = ()) -> Reply:
    return Reply(description, {"application/json": schema}, headers)


def ref(name: str) -> Schema:
    """A reference to one of the document's named schemas (`components/schemas`)."""
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Endpoint(Generic[S]):
    method: str
    path: str  # router pattern: {name} one segment, {name:path} the rest
    handler: Handler[S]
    summary: str
    api: API
    auth: Auth
    replies: Mapping[int, Reply]
    errors: frozenset[int]
    query: tuple[Param, ...] = ()
    path_params: Mapping[str, Param] = field(default_factory=dict)
    body: Body | None = None
    tag: str = ""
    schemas: Mapping[str, Schema] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    def path_names(self) -> list[str]:
        return _PARAM.findall(self.path)


class Area(Generic[S]):
    """The endpoints of one API area, declared beside their handlers."""

    def __init__(self, api: API, tag: str, schemas: Mapping[str, Schema] | None = None) -> None:
        self.api: API = api
        self.tag = tag
        # The named schemas its declarations `ref()` (several areas may share one mapping).
        self.schemas: Mapping[str, Schema] = schemas or {}
        self.endpoints: list[Endpoint[S]] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        ok: Reply | Mapping[int, Reply],
        auth: Auth = "token",
        errors: tuple[int, ...] = (),
        query: tuple[Param, ...] = (),
        path_params: Mapping[str, Param] | None = None,
        body: Body | None = None,
    ) -> Callable[[Handler[S]], Handler[S]]:
        replies = {200: ok} if isinstance(ok, Reply) else dict(ok)
        implied: set[int] = set(errors)
        if auth != "open":
            implied.add(403)
        if body is not None and body.content_type == "application/json":
            implied.add(400)
        if body is not None:
            implied.add(413)

        def add(handler: Handler[S]) -> Handler[S]:
            endpoint = Endpoint(
                method=method,
                path=path,
                handler=handler,
                summary=summary,
                api=self.api,
                auth=auth,
                replies=replies,
                errors=frozenset(implied),
                query=query,
                path_params=dict(path_params or {}),
                body=body,
                tag=self.tag,
                schemas=self.schemas,
            )
            missing = set(endpoint.path_params) - set(endpoint.path_names())
            if missing:
                raise AssertionError(f"{method} {path}: no path parameter {sorted(missing)}")
            self.endpoints.append(endpoint)
            return handler

        return add

    def mount(self, router: Router, state: S) -> None:
        for endpoint in self.endpoints:
            router.add(
                endpoint.method,
                endpoint.path,
                functools.partial(endpoint.handler, state),
                name=endpoint.operation_id,
                tags=(endpoint.api,),
                endpoint=endpoint,
            )
