"""The fake API server's HTTP side: the real REST paths, JSON bodies and chunked watches.

    GET    /api/v1/{plural}                                list or watch, all namespaces
    GET    /api/v1/namespaces/{ns}/{plural}                list or watch in a namespace
    POST   /api/v1/namespaces/{ns}/{plural}                create
    GET|PUT|DELETE /api/v1/namespaces/{ns}/{plural}/{name} read, replace, delete
    ...and the same under /apis/{group}/{version}/ (EndpointSlices, Leases, CRDs)

A path names a resource by group, version and plural; the object behind it is the one of
that group and plural whatever the version (two groups' `httproutes` are two resources).

Lists honour `limit`/`continue` (a consistent snapshot; 410 once compacted) and label and
field selectors; watches honour `resourceVersion`, `allowWatchBookmarks` and
`timeoutSeconds`, and stream one JSON event per line in chunked encoding.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ._store import (
    RESOURCES,
    ApiError,
    Event,
    Obj,
    Resource,
    field_matches,
    gone,
    parse_selector,
    qualified,
    selector_matches,
)

if TYPE_CHECKING:
    from . import FakeKube


@dataclass(eq=False)
class ActiveWatch:
    resource: str  # Resource.qualified
    namespace: str | None
    user_agent: str
    cut: str = ""  # "", "close", "reset" or "garbage"
    injected: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str | None
    name: str | None


def parse_path(path: str, resources: dict[str, Resource] = RESOURCES) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":
        # /api/v1/namespaces/{name}: the namespace object itself
        rest = ["namespaces", rest[1]]
    if not rest or len(rest) > 2:
        return None
    res = resources.get(qualified(rest[0], group))
    if res is None or res.version != version:
        return None
    if res.namespaced != (namespace is not None) and len(rest) == 2:
        return None
    if not res.namespaced and namespace is not None:
        return None
    return Route(res, namespace, rest[1] if len(rest) == 2 else None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeKube


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # A watch stream must reach the client as each event is written.
    wbufsize = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def fake(self) -> FakeKube:
        return self.server.fake

    def _send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", f"fake-{next(_audit)}")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, exc: ApiError) -> None:
        self._send_json(exc.code, exc.status())

    def _body(self) -> Obj:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype != "application/json":
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json (got {ctype})",
            )
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        return body

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        ua = self.headers.get("User-Agent", "")
        self.fake.log_request(method, split.path, query, ua)
        try:
            self._authorize()
            if split.path == "/version":
                self._send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"})
                return
            if method == "GET" and self._discovery(split.path):
                return
            route = parse_path(split.path, self.fake.store.resources)
            if route is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._dispatch(method, route, query, ua)
        except ApiError as exc:
            self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _discovery(self, path: str) -> bool:
        """`/apis` and `/apis/{group}/{version}`, as far as clients use them to learn what a
        cluster serves (a group-version with nothing served is a 404, as for a missing CRD)."""
        parts = [p for p in path.split("/") if p]
        store = self.fake.store
        if parts == ["apis"]:
            with store.cond:
                pairs = sorted({(r.group, r.version) for r in store.resources.values() if r.group})
            groups: dict[str, list[str]] = {}
            for group, version in pairs:
                groups.setdefault(group, []).append(version)
            self._send_json(200, _group_list(groups))
            return True
        if len(parts) != 3 or parts[0] != "apis":
            return False
        served = store.served(parts[1], parts[2])
        if not served:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{parts[1]}/{parts[2]}",
                "resources": [
                    {
                        "name": r.plural,
                        "singularName": r.kind.lower(),
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["delete", "get", "list", "patch", "create", "update", "watch"],
                    }
                    for r in served
                ],
            },
        )
        return True

    def _authorize(self) -> None:
        token = self.fake.token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _dispatch(self, method: str, route: Route, query: dict[str, str], ua: str) -> None:
        res = route.resource
        store = self.fake.store
        ns = route.namespace if res.namespaced else ""
        if route.name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    self._watch(route, query, ua)
                else:
                    self._list(route, query)
                return
            if method == "POST" and (route.namespace is not None or not res.namespaced):
                obj = self._checked_body(res, route)
                self._require_namespace(route)
                self.fake.allocate(res.qualified, obj, None)
                self._send_json(201, store.create(res.qualified, ns or "", obj))
                return
        else:
            if method == "GET":
                self._send_json(200, store.get(res.qualified, ns or "", route.name))
                return
            if method == "PUT":
                obj = self._checked_body(res, route)
                if obj["metadata"].get("name") != route.name:
                    raise ApiError(
                        400,
                        "BadRequest",
                        f"the name of the object ({obj['metadata'].get('name')}) does not match "
                        f"the name on the URL ({route.name})",
                    )
                old = store.get(res.qualified, ns or "", route.name)
                self.fake.allocate(res.qualified, obj, old)
                self._send_json(200, store.update(res.qualified, ns or "", obj))
                return
            if method == "DELETE":
                self._send_json(200, store.delete(res.qualified, ns or "", route.name))
                return
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on this resource")

    def _checked_body(self, res: Resource, route: Route) -> Obj:
        obj = self._body()
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if (kind and kind != res.kind) or (api_version and api_version != res.api_version):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) or kind ({kind}) does not match "
                f"the expected {res.api_version} {res.kind}",
            )
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            if isinstance(meta, dict) and meta.get("generateName"):
                meta["name"] = meta["generateName"] + f"{next(_audit):05x}"
            else:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{res.kind} "" is invalid: metadata.name: Required value: name or '
                    "generateName is required",
                    {"kind": res.kind, "causes": [{"field": "metadata.name"}]},
                )
        if route.namespace and meta.get("namespace") not in (None, "", route.namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        error = self.fake.validate(res.qualified, obj)
        if error:
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind} "{meta["name"]}" is invalid: {error}',
                {"name": meta["name"], "kind": res.kind},
            )
        return obj

    def _require_namespace(self, route: Route) -> None:
        if route.namespace is None:
            return
        try:
            self.fake.store.get("namespaces", "", route.namespace)
        except ApiError:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{route.namespace}" not found',
                {"name": route.namespace, "kind": "namespaces"},
            ) from None

    # -- lists -------------------------------------------------------------------------------

    def _matcher(self, query: dict[str, str]):  # type: ignore[no-untyped-def]
        labels = parse_selector(query.get("labelSelector"))
        fields = parse_selector(query.get("fieldSelector"))

        def match(obj: Obj) -> bool:
            meta = obj.get("metadata") or {}
            return selector_matches(labels, meta.get("labels") or {}) and field_matches(fields, obj)

        return match

    def _list(self, route: Route, query: dict[str, str]) -> None:
        res = route.resource
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        if token:
            rv, items, start = self.fake.continue_list(token)
        else:
            rv, items = self.fake.store.list(res.qualified, route.namespace, self._matcher(query))
            start = 0
        meta: Obj = {"resourceVersion": str(rv)}
        page = items[start:]
        if limit and len(page) > limit:
            page = page[:limit]
            meta["continue"] = self.fake.remember_list(rv, items, start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
        # Items of a typed list carry no kind/apiVersion: the list does.
        page = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in page]
        self._send_json(
            200,
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": meta,
                "items": page,
            },
        )

    # -- watches -----------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, route: Route, query: dict[str, str], ua: str) -> None:
        res = route.resource
        store = self.fake.store
        match = self._matcher(query)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or self.fake.watch_timeout)
        raw_rv = query.get("resourceVersion") or ""
        if self.fake.refuse_watches:
            raise ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        backlog: list[bytes] = []
        with store.cond:
            if raw_rv in ("", "0"):
                # No version: the current state as synthetic ADDED events, then changes.
                _, items = store.list(res.qualified, route.namespace, match)
                backlog = [_event_line("ADDED", obj) for obj in items]
                pos = store.rv
            else:
                try:
                    rv = int(raw_rv)
                except ValueError:
                    raise ApiError(
                        400, "BadRequest", f"resourceVersion: {raw_rv!r} is not a version"
                    ) from None
                if rv < store.oldest:
                    if self.fake.gone_as_http_status:
                        raise gone(rv, store.oldest)
                    backlog = [_error_line(gone(rv, store.oldest))]
                    pos = -1
                else:
                    pos = rv
        watch = ActiveWatch(res.qualified, route.namespace, ua)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.fake.watch_started(watch)
        try:
            for line in backlog:
                self._write_chunk(line)
            if pos < 0:  # the ERROR event ends the watch, as on a real server
                self._write_chunk_end()
                return
            self._stream(watch, route, match, pos, bookmarks, time.monotonic() + timeout)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            self.fake.watch_ended(watch)

    def _write_chunk_end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _stream(
        self, watch: ActiveWatch, route: Route, match, pos: int, bookmarks: bool, deadline: float
    ) -> None:  # type: ignore[no-untyped-def]
        store = self.fake.store
        res = route.resource
        next_bookmark = time.monotonic() + self.fake.bookmark_interval
        while True:
            with store.cond:
                wake_at = min(deadline, next_bookmark) if bookmarks else deadline
                while (
                    store.rv <= pos
                    and not watch.cut
                    and not watch.injected
                    and time.monotonic() < wake_at
                ):
                    store.cond.wait(max(0.0, wake_at - time.monotonic()))
                events = store.events_after(pos, check=False)
                pos = store.rv
                injected, watch.injected = watch.injected, []
                cut = watch.cut
            lines = [line for e in events if (line := _filtered(e, route, match)) is not None]
            lines.extend(injected)
            if cut == "garbage":
                self._write_chunk(b'{"type":"MODIFIED","object":{"kind":"Po')
                self._abort()
                return
            if cut == "reset":
                self._abort()
                return
            for line in lines:
                self._write_chunk(line)
            now = time.monotonic()
            if cut == "close" or now >= deadline:
                self._write_chunk_end()
                return
            if bookmarks and now >= next_bookmark:
                bookmark = {
                    "kind": res.kind,
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(pos)},
                }
                self._write_chunk(_line("BOOKMARK", bookmark))
                next_bookmark = now + self.fake.bookmark_interval

    def _abort(self) -> None:
        """Drop the connection mid-stream, with no terminating chunk (a broken stream)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


_audit = itertools.count(1)


def _line(type_: str, obj: Obj) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _event_line(type_: str, obj: Obj) -> bytes:
    return _line(type_, obj)


def _error_line(exc: ApiError) -> bytes:
    return _line("ERROR", exc.status())


def _filtered(event: Event, route: Route, match) -> bytes | None:  # type: ignore[no-untyped-def]
    """The event as this watch sees it: objects entering or leaving its selector."""
    if event.resource != route.resource.qualified:
        return None
    if route.namespace is not None and event.namespace != route.namespace:
        return None
    now_matches = match(event.obj)
    if event.type == "ADDED":
        return _line("ADDED", event.obj) if now_matches else None
    if event.type == "DELETED":
        return _line("DELETED", event.obj) if now_matches else None
    was = event.old is not None and match(event.old)
    if was and now_matches:
        return _line("MODIFIED", event.obj)
    if now_matches:
        return _line("ADDED", event.obj)
    if was:
        return _line("DELETED", event.obj)
    return None


def _group_list(groups: dict[str, list[str]]) -> Obj:
    def entry(group: str, version: str) -> Obj:
        return {"groupVersion": f"{group}/{version}", "version": version}

    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [entry(group, v) for v in versions],
                "preferredVersion": entry(group, versions[0]),
            }
            for group, versions in groups.items()
        ],
    }


def encode_continue(snapshot: int, start: int) -> str:
    raw = json.dumps({"s": snapshot, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["s"]), int(data["start"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "BadRequest", f"continue: {token!r} is not a continue token") from None


def serve(fake: FakeKube, host: str, ssl_context: Any = None) -> _Server:
    httpd = _Server((host, 0), Handler)
    httpd.fake = fake
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="fake-kube", daemon=True)
    thread.start()
    return httpd
