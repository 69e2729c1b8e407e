"""Tiny applications for `weft dev`: services that call each other, and a load generator.

    python -m weft._demo_apps app --name frontend --port 18080 --upstream http://127.0.0.1:19001
    python -m weft._demo_apps load --url http://127.0.0.1:19000/ --rate 20

An app answers `GET /` with JSON naming itself, after calling its upstream (through its
sidecar's local port) if it has one; `GET /health` is its health check. The load generator
sends steady traffic and prints a summary line every few seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import httpx
import trio

from registry.web import HTTPServer, Request, Response

# What an app in the mesh must copy from the request it serves onto the calls it makes, for
# the sidecars' spans to join one trace (docs/tracing.md).
TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
)


async def run_app(name: str, port: int, upstream: str | None) -> None:
    async with httpx.AsyncClient(timeout=5) as http:

        async def handle(request: Request) -> Response:
            if request.path == "/health":
                return Response.json({"status": "ok", "service": name})
            body: dict[str, object] = {"service": name, "path": request.path}
            if upstream:
                try:
                    forward = {h: v for h in TRACE_HEADERS if (v := request.headers.get(h))}
                    resp = await http.get(upstream + request.path, headers=forward)
                    body["upstream"] = (
                        resp.json()
                        if resp.status_code == 200
                        else {"status": resp.status_code, "body": resp.text[:200]}
                    )
                    if resp.status_code != 200:
                        return Response.json(body, status=502)
                except httpx.HTTPError as exc:
                    body["upstream_error"] = str(exc) or type(exc).__name__
                    return Response.json(body, status=502)
            return Response.json(body)

        server = HTTPServer(handle)
        await server.serve("127.0.0.1", port)


async def run_load(url: str, rate: float, report_every: float) -> None:
    ok = failed = 0
    last_error = ""
    interval = 1.0 / rate
    next_report = time.monotonic() + report_every
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            started = trio.current_time()
            try:
                resp = await http.get(url)
                if resp.status_code == 200:
                    ok += 1
                else:
                    failed += 1
                    last_error = f"HTTP {resp.status_code}: {resp.text[:120]}"
            except httpx.HTTPError as exc:
                failed += 1
                last_error = str(exc) or type(exc).__name__
            if time.monotonic() >= next_report:
                line: dict[str, object] = {"ok": ok, "failed": failed, "rate": rate}
                if last_error:
                    line["last_error"] = last_error
                print("load " + json.dumps(line), flush=True)
                next_report += report_every
            await trio.sleep(max(0.0, interval - (trio.current_time() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weft._demo_apps")
    sub = parser.add_subparsers(dest="what", required=True)
    app = sub.add_parser("app")
    app.add_argument("--name", required=True)
    app.add_argument("--port", type=int, required=True)
    app.add_argument("--upstream")
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--rate", type=float, default=20.0)
    load.add_argument("--report-every", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        if args.what == "app":
            trio.run(run_app, args.name, args.port, args.upstream)
        else:
            trio.run(run_load, args.url, args.rate, args.report_every)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
