"""A small HTTP endpoint for probes and operators: /healthz, /readyz, /status, /metrics.

    /healthz   200 while the process's loops run (liveness)
    /readyz    200 once every informer has listed and the registry token was accepted;
               a standby replica is ready too (it is warm and can take over at once)
    /status    JSON: leadership, informer and sync counters
    /metrics   the same counters in the Prometheus text format

One request per connection and a few kilobytes at most: this is for kubelet probes and
scrapers, not a general server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger("weft.k8s.http")

MAX_REQUEST = 8192


class StatusServer:
    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], str],
    ) -> None:
        self.ready = ready
        self.status = status
        self.metrics = metrics

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[:2]
        task_status.started((bound[0], bound[1]))
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(5):
                data = b""
                while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    data += chunk
                await stream.send_all(self.respond(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    def respond(self, request: bytes) -> bytes:
        """The whole HTTP response to one request (pure, for tests)."""
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, "text/plain", b"bad request\n")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, "text/plain", b"only GET\n")
        if target == "/healthz":
            body, code, ctype = b"ok\n", 200, "text/plain"
        elif target == "/readyz":
            ready = self.ready()
            body, code, ctype = (
                (b"ready\n" if ready else b"not ready\n"),
                (200 if ready else 503),
                "text/plain",
            )
        elif target == "/status":
            body = json.dumps(self.status(), indent=2, default=str).encode() + b"\n"
            code, ctype = 200, "application/json"
        elif target == "/metrics":
            body, code, ctype = self.metrics().encode(), 200, "text/plain; version=0.0.4"
        else:
            body, code, ctype = b"not found\n", 404, "text/plain"
        return _response(code, ctype, b"" if method == "HEAD" else body)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def _response(code: int, ctype: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def prometheus(metrics: dict[str, tuple[str, str, float]]) -> str:
    """Prometheus text from {name: (type, help, value)}."""
    lines = []
    for name, (kind, help_text, value) in sorted(metrics.items()):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {value:g}")
    return "\n".join(lines) + "\n"
