"""A demo app for the Ansible host tests (stdlib only; runs on the test hosts' python3).

    mesh_demo_app.py --name api --node beta --port 9001
    mesh_demo_app.py --name web --node alpha --port 9000 --upstream 127.0.0.1:9191

GET /health answers 200. GET / answers "<name>@<node>"; with --upstream, the app first calls
its upstream through the local sidecar and answers "web@alpha -> api@beta", or 502 naming the
upstream's failure, so a client sees which hosts a request crossed and whether it failed.
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    me = f"{args.name}@{args.node}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/health":
                self.answer(200, "ok")
                return
            if not args.upstream:
                self.answer(200, me)
                return
            try:
                with urllib.request.urlopen(f"http://{args.upstream}/", timeout=10) as resp:
                    self.answer(200, f"{me} -> {resp.read().decode()}")
            except (urllib.error.URLError, OSError) as exc:
                self.answer(502, f"{me}: upstream failed: {exc}")

        def answer(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *rest: object) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
