"""The admin listener (127.0.0.1 by default): health, metrics, configuration, live requests.

    GET /live     200 while the process runs
    GET /ready    200 once a snapshot and its certificates are loaded; 503 (with why) before
                  that and while draining
    GET /metrics  Prometheus text (prometheus-client exposition)
    GET /config   JSON: the snapshot in use, its version and digest, the last document's
                  fate (applied or refused, and why), bound listeners, certificate expiry,
                  each upstream's endpoints with their balancer state
    GET /tap      newline-delimited JSON, one summary per proxied request, for as long as the
                  client keeps reading (`?limit=N` ends it after N)

One request per connection; the answers come from an `AdminProvider`, which is the runtime
itself or, with `--workers N`, the parent adding up its workers' answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import trio

from ._errors import HttpError, ListenerError, StreamClosed
from ._h1 import Limits, find_head, local_response, parse_request_head
from ._options import parse_address
from ._stream import Stream, accept, bind_listener

log = logging.getLogger("weft.proxy")

_LIMITS = Limits(max_head_bytes=16 * 1024, max_headers=50)


class AdminProvider(Protocol):
    async def ready(self) -> tuple[bool, str]: ...

    async def metrics(self) -> bytes: ...

    async def config(self) -> dict[str, Any]: ...

    def tap(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...


class AdminServer:
    def __init__(self, provider: AdminProvider, address: str) -> None:
        self.provider = provider
        self.host, self.port = parse_address(address)
        self.bound = ""

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            sock = bind_listener(self.host, self.port)
        except ListenerError as exc:
            raise ListenerError(f"admin: {exc}") from exc
        host, port = sock.getsockname()[:2]
        self.bound = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.bound)
                while True:
                    conn = await accept(sock)
                    nursery.start_soon(self._handle, Stream(conn))
        finally:
            sock.close()

    async def _handle(self, stream: Stream) -> None:
        try:
            with trio.move_on_after(10):
                buf = b""
                while (n := find_head(buf, _LIMITS)) < 0:
                    data = await stream.recv()
                    if not data:
                        return
                    buf += data
                head = parse_request_head(buf[:n], _LIMITS)
            if not buf:
                return
            await self._dispatch(stream, head.method, head.target.decode("latin-1"))
        except HttpError as exc:
            try:
                await stream.send_all(local_response(exc.status, exc.reason + "\n", close=True))
            except StreamClosed:
                pass
        except StreamClosed:
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            stream.close()

    async def _dispatch(self, stream: Stream, method: bytes, target: str) -> None:
        url = urlsplit(target)
        path = url.path
        if method not in (b"GET", b"HEAD"):
            await stream.send_all(
                local_response(405, "only GET\n", close=True, headers=[(b"Allow", b"GET, HEAD")])
            )
            return
        head_only = method == b"HEAD"
        if path == "/live":
            await stream.send_all(local_response(200, "live\n", close=True, head_only=head_only))
        elif path == "/ready":
            ok, why = await self.provider.ready()
            status = 200 if ok else 503
            await stream.send_all(
                local_response(status, why + "\n", close=True, head_only=head_only)
            )
        elif path == "/metrics":
            text = await self.provider.metrics()
            await stream.send_all(
                local_response(
                    200,
                    text.decode(),
                    close=True,
                    head_only=head_only,
                    content_type=b"text/plain; version=0.0.4; charset=utf-8",
                )
            )
        elif path == "/config":
            doc = await self.provider.config()
            await stream.send_all(
                local_response(
                    200,
                    json.dumps(doc, indent=2, sort_keys=True) + "\n",
                    close=True,
                    head_only=head_only,
                    content_type=b"application/json",
                )
            )
        elif path == "/tap":
            limit_text = parse_qs(url.query).get("limit", ["0"])[0]
            limit = int(limit_text) if limit_text.isdigit() else 0
            await self._tap(stream, limit)
        else:
            await stream.send_all(
                local_response(
                    404, "not found: try /ready, /live, /metrics, /config or /tap\n", close=True
                )
            )

    async def _tap(self, stream: Stream, limit: int) -> None:
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        )
        sent = 0
        async with self.provider.tap() as summaries:
            async for summary in summaries:
                line = json.dumps(summary, separators=(",", ":")).encode() + b"\n"
                await stream.send_all(b"%x\r\n%s\r\n" % (len(line), line))
                sent += 1
                if limit and sent >= limit:
                    break
        await stream.send_all(b"0\r\n\r\n")
