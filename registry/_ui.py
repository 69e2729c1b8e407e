"""`/ui`: the read-only web dashboard's static files (docs/observability.md, "Dashboard").

The files are plain HTML, CSS and JavaScript modules in `registry/ui/` (package data; no build
step, nothing fetched from elsewhere). The page reads the same API as the CLI with the token
the user pastes. Served with a Content-Security-Policy that allows scripts, styles and
requests from this origin only (no inline script, no eval, no framing), `nosniff`, and
`Cache-Control: no-cache` with an ETag: a browser revalidates each load, so a server upgrade
never leaves it running yesterday's script against today's API.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from ._context import Context
from ._endpoints import Area, Param, Reply
from .web import HTTPError, Request, Response, Router

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


def _load() -> dict[str, tuple[bytes, str, str]]:
    """Every asset by name: (body, content type, ETag). Only these names are ever served."""
    out = {}
    for entry in resources.files("registry.ui").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            out[entry.name] = (body, _TYPES[suffix], etag)
    return out


AREA: Area[dict[str, tuple[bytes, str, str]]] = Area("server", "dashboard")
_PAGE = Reply("The dashboard", {"text/html": {"type": "string"}})


def mount(router: Router, ctx: Context) -> None:
    AREA.mount(router, _load())


def _serve(assets: dict[str, tuple[bytes, str, str]], request: Request, name: str) -> Response:
    found = assets.get(name)
    if found is None:
        raise HTTPError(404, f"no such dashboard file: {name[:80]!r}")
    body, content_type, etag = found
    headers = [*HEADERS, ("ETag", etag)]
    if request.headers.get("if-none-match") == etag:
        return Response(status=304, body=b"", content_type=content_type, headers=headers)
    return Response(body=body, content_type=content_type, headers=headers)


@AREA.route("GET", "/ui", summary="The web dashboard (read-only)", auth="open", ok=_PAGE)
@AREA.route("GET", "/ui/", summary="The web dashboard (read-only)", auth="open", ok=_PAGE)
async def dashboard(assets: dict[str, tuple[bytes, str, str]], request: Request) -> Response:
    return _serve(assets, request, "index.html")


@AREA.route(
    "GET",
    "/ui/{name}",
    summary="One of the dashboard's files (HTML, CSS, JavaScript modules)",
    auth="open",
    errors=(404,),
    path_params={"name": Param("name", description="e.g. app.js")},
    ok=Reply("The file", {"text/javascript": {"type": "string"}, "text/css": {"type": "string"}}),
)
async def dashboard_file(assets: dict[str, tuple[bytes, str, str]], request: Request) -> Response:
    return _serve(assets, request, request.params["name"])
