"""The trio side of the HTTP server: accept, read, call the app, write. Nothing else."""

from __future__ import annotations

import email.utils
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from ._parser import ParsedRequest, ProtocolError, RequestParser
from ._routing import Request, Response

log = logging.getLogger("weft.http")

App = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body: int = 1 << 20
    head_timeout: float = 10.0  # from a request's first byte to the end of its head (slowloris)
    body_timeout: float = 30.0
    idle_timeout: float = 75.0  # keep-alive connection with no request in progress
    tls_handshake_timeout: float = 10.0
    grace: float = 10.0  # how long in-flight requests get on shutdown


_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Date:
    """The Date header, formatted at most once per second."""

    value = b""
    second = -1

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second = second
            cls.value = email.utils.formatdate(second, usegmt=True).encode()
        return cls.value


def serialize(response: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, "").encode()),
        b"date: " + _Date.now() + b"\r\n",
        b"content-type: " + response.content_type.encode() + b"\r\n",
        b"content-length: %d\r\n" % len(response.body),
    ]
    for name, value in response.headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(response.body)
    return b"".join(lines)


def to_request(parsed: ParsedRequest, peer: str) -> Request:
    target = parsed.target.decode("latin-1")
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True) if split.query else {}
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in parsed.headers}
    return Request(
        method=parsed.method,
        path=unquote(split.path) or "/",
        query=query,
        headers=headers,
        body=parsed.body,
        peer=peer,
    )


class HTTPServer:
    """Serves `app` on one address until cancelled or `shutdown()`; drains on the way out."""

    def __init__(
        self,
        app: App,
        *,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        watch_disconnect: Callable[[Request], bool] = lambda request: False,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self.watch_disconnect = watch_disconnect
        self._stopping = trio.Event()
        self._idle: set[trio.CancelScope] = set()
        self._busy = 0
        self._drained = trio.Event()

    async def wait_drained(self) -> None:
        """Returns once shutdown() was called and no request is in progress."""
        await self._drained.wait()

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their response."""
        self._stopping.set()
        for scope in list(self._idle):
            scope.cancel()
        if self._busy == 0:
            self._drained.set()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            connections = trio.CancelScope()

            async def accept_all() -> None:
                with connections:
                    await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

            nursery.start_soon(accept_all)
            task_status.started((bound[0], bound[1]))
            await self._stopping.wait()
            for listener in listeners:
                await listener.aclose()
            connections.cancel()
            with trio.move_on_after(self.limits.grace):
                await self._drained.wait()
            nursery.cancel_scope.cancel()

    async def _handle(self, stream: trio.abc.Stream) -> None:
        try:
            peer = stream.socket.getpeername()[0]  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            peer = ""
        try:
            if self.ssl_context is not None:
                stream = trio.SSLStream(stream, self.ssl_context, server_side=True)
                with trio.fail_after(self.limits.tls_handshake_timeout):
                    await stream.do_handshake()
            await self._converse(stream, peer)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            ssl.SSLError,
            OSError,
        ):
            pass
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await stream.aclose()

    async def _converse(self, stream: trio.abc.Stream, peer: str) -> None:
        limits = self.limits
        parser = RequestParser(
            max_head_bytes=limits.max_head_bytes,
            max_headers=limits.max_headers,
            max_body=limits.max_body,
        )
        pending: list[ParsedRequest] = []
        leftover = b""
        while True:
            if not pending:
                if self._stopping.is_set():
                    return
                data = leftover or await self._receive(stream, parser)
                leftover = b""
                if data is None:
                    return
                try:
                    pending.extend(parser.feed(data))
                except ProtocolError as exc:
                    body = Response.text(exc.message + "\n", exc.status)
                    await stream.send_all(serialize(body, keep_alive=False))
                    return
                continue
            parsed = pending.pop(0)
            request = to_request(parsed, peer)
            keep_alive = parsed.keep_alive and not self._stopping.is_set()
            self._busy += 1
            try:
                if self.watch_disconnect(request):
                    response, leftover = await self._call_watching(stream, request)
                    if response is None:
                        return  # the client went away while we waited
                else:
                    response = await self.app(request)
            finally:
                self._busy -= 1
                if self._busy == 0 and self._stopping.is_set():
                    self._drained.set()
            keep_alive = keep_alive and not self._stopping.is_set()
            await stream.send_all(
                serialize(response, keep_alive=keep_alive, head_only=request.method == "HEAD")
            )
            if not keep_alive:
                return

    async def _receive(self, stream: trio.abc.Stream, parser: RequestParser) -> bytes | None:
        """The next bytes, or None at EOF or when a timeout says to hang up."""
        timeout = self.limits.head_timeout if parser.in_request else self.limits.idle_timeout
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            if not parser.in_request:
                self._idle.add(scope)
            try:
                data = await stream.receive_some(65536)
            finally:
                self._idle.discard(scope)
        if scope.cancelled_caught:
            if parser.in_request and not self._stopping.is_set():
                await stream.send_all(
                    serialize(
                        Response.text("request took too long to arrive\n", 408), keep_alive=False
                    )
                )
            return None
        return data or None

    async def _call_watching(
        self, stream: trio.abc.Stream, request: Request
    ) -> tuple[Response | None, bytes]:
        """Run a possibly long request, abandoning it if the client hangs up meanwhile."""
        result: list[Response] = []
        early: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                result.append(await self.app(request))
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                data = await stream.receive_some(65536)
                if data:
                    early.append(data)  # a pipelined request: keep it for later
                    await trio.sleep(math.inf)
                nursery.cancel_scope.cancel()

            async def stop() -> None:
                # A blocking query can wait for minutes: on shutdown, hang up at once (the
                # client asks again, maybe another server) rather than hold the drain.
                await self._stopping.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(call)
            nursery.start_soon(watch)
            nursery.start_soon(stop)
        return (result[0] if result else None), b"".join(early)
