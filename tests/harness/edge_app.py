"""A small HTTP/1.1 app for the gateway tests: JSON naming itself and the request it got; a
slow download (`/download?chunks=N&delay=S`: N chunks of 64 KiB, S seconds apart, with a
Content-Length), so a test can hold a response open across a certificate swap; and `/seen`,
every target it was sent, so a test sees what got through.

    python -m tests.harness.edge_app --name books --port 18080
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = b"x" * 65536


def handler(name: str) -> type[BaseHTTPRequestHandler]:
    seen: list[str] = []  # every request target, for `GET /seen` (smuggling tests)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/seen":
                seen.append(self.path)
            if url.path == "/download":
                query = parse_qs(url.query)
                chunks = int(query.get("chunks", ["8"])[0])
                delay = float(query.get("delay", ["0.5"])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(chunks * len(CHUNK)))
                self.end_headers()
                for i in range(chunks):
                    if i:
                        time.sleep(delay)
                    self.wfile.write(CHUNK)
                    self.wfile.flush()
                return
            body = json.dumps(
                seen
                if url.path == "/seen"
                else {
                    "service": name,
                    "path": url.path,
                    "host": self.headers.get("Host"),
                    "client_id": self.headers.get("x-weft-client-id"),
                    "forwarded_for": self.headers.get("x-forwarded-for"),
                    "forwarded_proto": self.headers.get("x-forwarded-proto"),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.name)).serve_forever()


if __name__ == "__main__":
    main()
