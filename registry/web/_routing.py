"""Requests, responses and a method + path router."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._json import JSONRejected, loads

Handler = Callable[["Request"], Awaitable["Response"]]


class HTTPError(Exception):
    """Raised by a handler (or the router) to answer with `status` and a message."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, allow: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.allow = allow


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str
    params: dict[str, str] = field(default_factory=dict)
    route: Route | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        """`?passing`, `?passing=` and `?passing=true` are set; `?passing=false` is not."""
        values = self.query.get(name)
        if values is None:
            return False
        return values[-1].lower() not in ("false", "0", "no")

    def json(self) -> Any:
        """The body as strict JSON (see `_json`): malformed, too deep or NaN bodies are 400s."""
        if not self.body:
            raise HTTPError(400, "request body is empty; expected a JSON document")
        try:
            return loads(self.body)
        except JSONRejected as exc:
            raise HTTPError(400, exc.message, field=exc.field) from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(status=status, body=body, headers=headers or [])

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status=status, body=text.encode(), content_type="text/plain; charset=utf-8")


@dataclass(slots=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    name: str
    tags: frozenset[str]
    # What the route was declared as (the registry's `Endpoint`): the OpenAPI document reads it.
    endpoint: Any = None


_PARAM = re.compile(r"\{(\w+)(?::(path))?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : match.start()]))
        out.append(
            f"(?P<{match.group(1)}>.*)" if match.group(2) else f"(?P<{match.group(1)}>[^/]+)"
        )
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    # DOTALL and fullmatch: a key ending in a decoded newline must match whole, not stop
    # short of it as `.*$` would.
    return re.compile("".join(out), re.DOTALL)


class Router:
    """Routes by method and path; `{name}` matches one segment, `{name:path}` the rest."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._exact: dict[tuple[str, str], Route] = {}

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        name: str = "",
        tags: tuple[str, ...] = (),
        endpoint: Any = None,
    ) -> None:
        route = Route(
            method, pattern, _compile(pattern), handler, name or pattern, frozenset(tags), endpoint
        )
        self.routes.append(route)
        if "{" not in pattern:
            self._exact[(method, pattern)] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        allowed: list[str] = []
        for route in self.routes:
            m = route.regex.fullmatch(path)
            if m is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                # `path` arrives percent-decoded once (by the server); decoding the
                # parameters again would turn a KV key's "%25" into "%" and then into a byte.
                return route, m.groupdict()
            allowed.append(route.method)
        if allowed:
            raise HTTPError(
                405,
                f"{method} is not allowed on {path}; use {', '.join(sorted(set(allowed)))}",
                allow=", ".join(sorted(set(allowed))),
            )
        raise HTTPError(404, f"no such endpoint: {path}")
