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
        # Requests that may wait a long time (blocking queries): hung up on at shutdown.
        long_request: Callable[[Request], bool] = lambda request: False,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self.long_request = long_request
        self._stopping = trio.Event()
        self._idle: set[trio.CancelScope] = set()
        self._long: set[trio.CancelScope] = set()
        self._busy = 0
        self._drained = trio.Event()

    async def wait_drained(self) -> None:
        """Returns once shutdown() was called and no request is in progress."""
        await self._drained.wait()

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their response, and
        long requests (blocking queries, which could hold the drain for minutes) at once:
        their clients ask again, maybe another server."""
        self._stopping.set()
        for scope in list(self._idle) + list(self._long):
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
        """Answer requests in order; a reader task reads ahead for the whole connection, so
        a client hanging up during a long request is noticed without per-request tasks."""
        limits = self.limits
        parser = RequestParser(
            max_head_bytes=limits.max_head_bytes,
            max_headers=limits.max_headers,
            max_body=limits.max_body,
        )
        conn = _Connection()
        send, receive = trio.open_memory_channel[ParsedRequest | ProtocolError | None](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_ahead, stream, parser, send, conn)
            try:
                await self._answer(stream, peer, receive, conn)
            finally:
                nursery.cancel_scope.cancel()

    async def _answer(
        self,
        stream: trio.abc.Stream,
        peer: str,
        receive: trio.MemoryReceiveChannel[ParsedRequest | ProtocolError | None],
        conn: _Connection,
    ) -> None:
        async for item in receive:
            if item is None:
                return
            if isinstance(item, ProtocolError):
                body = Response.text(item.message + "\n", item.status)
                await stream.send_all(serialize(body, keep_alive=False))
                return
            if self._stopping.is_set():
                return
            request = to_request(item, peer)
            long = self.long_request(request)
            self._busy += 1
            conn.start_request()
            try:
                with trio.CancelScope() as scope:
                    conn.scope = scope
                    if long:
                        self._long.add(scope)
                    response = await self.app(request)
            finally:
                self._long.discard(scope)
                conn.end_request(limits_idle=self.limits.idle_timeout)
                self._busy -= 1
                if self._busy == 0 and self._stopping.is_set():
                    self._drained.set()
            if scope.cancelled_caught:
                return  # the client went away, or the server is stopping
            keep_alive = item.keep_alive and not self._stopping.is_set()
            await stream.send_all(
                serialize(response, keep_alive=keep_alive, head_only=request.method == "HEAD")
            )
            if not keep_alive:
                return

    async def _read_ahead(
        self,
        stream: trio.abc.Stream,
        parser: RequestParser,
        send: trio.MemorySendChannel[ParsedRequest | ProtocolError | None],
        conn: _Connection,
    ) -> None:
        limits = self.limits
        while True:
            if parser.in_request:
                deadline = trio.current_time() + limits.head_timeout
            elif conn.scope is not None:
                deadline = math.inf  # a request is being answered: no idle clock
            else:
                deadline = trio.current_time() + limits.idle_timeout
            with trio.CancelScope(deadline=deadline) as scope:
                conn.read_scope = scope
                idle = not parser.in_request and conn.scope is None
                if idle:
                    self._idle.add(scope)
                try:
                    data = await stream.receive_some(65536)
                finally:
                    self._idle.discard(scope)
                    conn.read_scope = None
            if scope.cancelled_caught:
                if parser.in_request and conn.scope is None and not self._stopping.is_set():
                    late = Response.text("request took too long to arrive\n", 408)
                    await stream.send_all(serialize(late, keep_alive=False))
                send.send_nowait(None)
                return
            if not data:
                if conn.scope is not None:
                    conn.scope.cancel()  # hung up mid-request: stop working for nobody
                send.send_nowait(None)
                return
            try:
                for request in parser.feed(bytes(data)):
                    send.send_nowait(request)
            except ProtocolError as exc:
                send.send_nowait(exc)
                return


class _Connection:
    """What the reader and the answering loop of one connection share."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None  # the request being answered
        self.read_scope: trio.CancelScope | None = None  # the reader's current receive

    def start_request(self) -> None:
        # The reader may be waiting under an idle deadline: a request in progress has none.
        if self.read_scope is not None:
            self.read_scope.deadline = math.inf

    def end_request(self, *, limits_idle: float) -> None:
        self.scope = None
        if self.read_scope is not None:
            self.read_scope.deadline = trio.current_time() + limits_idle
