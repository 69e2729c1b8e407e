"""One client connection: a reader task and an answering loop around a pure `Inbox`.

The contract: nothing a client does escapes `Connection.run`. A reset, a half-close, a stall,
garbage, a TLS failure or a bug in a handler ends this connection (or, for a handler bug,
answers that one request with 500) and is logged with the peer; the server keeps serving.

The reader keeps reading while a request is answered, bounded by the inbox, so a client that
hangs up during a blocking query is noticed and that query released at once.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

from ._inbox import Inbox
from ._parser import ParsedRequest, ProtocolError, RequestParser
from ._routing import Response
from ._wire import serialize, to_request

if TYPE_CHECKING:
    from ._server import HTTPServer

log = logging.getLogger("weft.http")

_CHUNK = 64 * 1024
# What a client's misbehaviour raises from a stream; anything else is a bug of ours.
_CLIENT_ERRORS = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    ssl.SSLError,
    OSError,
)
_FATAL = (trio.Cancelled, KeyboardInterrupt, SystemExit)


class _Signal:
    """Wakes one waiting task; a wake-up before the wait is not lost."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class Connection:
    def __init__(self, server: HTTPServer, stream: trio.abc.Stream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        limits = server.limits
        self.inbox = Inbox(
            RequestParser(
                max_head_bytes=limits.max_head_bytes,
                max_headers=limits.max_headers,
                max_body=limits.max_body,
            ),
            read_ahead=limits.read_ahead,
            head_timeout=limits.head_timeout,
            body_timeout=limits.body_timeout,
            idle_timeout=limits.idle_timeout,
            now=trio.current_time(),
        )
        self._ended = ""  # why the reader stopped: "eof", "broken", "timeout" or "stopping"
        self._changed = _Signal()  # for the answering loop: a request arrived, or the end
        self._room = _Signal()  # for the reader: the inbox wants bytes again
        self._read_scope: trio.CancelScope | None = None
        self._request_scope: trio.CancelScope | None = None
        self._long = False

    async def run(self) -> None:
        """Serve the connection until it ends; raises only cancellation."""
        try:
            if self.server.ssl_context is not None:
                self.stream = trio.SSLStream(self.stream, self.server.ssl_context, server_side=True)
                with trio.fail_after(self.server.limits.tls_handshake_timeout):
                    await self.stream.do_handshake()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                try:
                    await self._answer()
                finally:
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            fatal, absorbed = _split(exc)
            if absorbed is not None:
                self._log_absorbed(absorbed)
            if fatal is not None:
                raise fatal from None
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await self.stream.aclose()
                except Exception:  # closing a broken stream may fail; it is closed anyway
                    pass

    def stop(self) -> None:
        """The server is shutting down: close now if idle, and hang up on a blocking query."""
        if self.inbox.idle and self._read_scope is not None:
            self._read_scope.cancel()
        if self._long and self._request_scope is not None:
            self._request_scope.cancel()

    # -- reading -------------------------------------------------------------------------------

    async def _read(self) -> None:
        inbox = self.inbox
        try:
            while True:
                while not inbox.wants_bytes:
                    await self._room.wait()
                if self.server.stopping.is_set() and inbox.idle:
                    self._end("stopping")
                    return
                with trio.CancelScope(deadline=inbox.deadline()) as scope:
                    self._read_scope = scope
                    try:
                        data = await self.stream.receive_some(_CHUNK)
                    finally:
                        self._read_scope = None
                if scope.cancelled_caught:
                    self._end("stopping" if self.server.stopping.is_set() else "timeout")
                    return
                if not data:
                    self._end("eof")
                    return
                inbox.receive(bytes(data), trio.current_time())
                self._changed.set()
        except _CLIENT_ERRORS:
            self._end("broken")

    def _end(self, why: str) -> None:
        self._ended = why
        # A client gone during a blocking query is not coming back for the answer; a write in
        # progress is left to finish, so it is never half-done because the client hung up.
        if self._long and self._request_scope is not None and why in ("eof", "broken"):
            self._request_scope.cancel()
        self._changed.set()

    def _client_clock_changed(self) -> None:
        if self._read_scope is not None:
            self._read_scope.deadline = self.inbox.deadline()

    # -- answering -----------------------------------------------------------------------------

    async def _answer(self) -> None:
        inbox, server = self.inbox, self.server
        while True:
            item = inbox.take()
            if item is None:
                if self._ended:
                    if self._ended == "timeout" and inbox.waiting_for:
                        late = Response.text(
                            f"request {inbox.waiting_for} took too long to arrive\n", 408
                        )
                        await self._send(serialize(late, keep_alive=False))
                    return
                await self._changed.wait()
                continue
            if isinstance(item, ProtocolError):
                refused = Response.text(item.message + "\n", item.status)
                await self._send(serialize(refused, keep_alive=False))
                return
            if server.stopping.is_set():
                return
            self._client_clock_changed()  # none while the server works
            answer = await self._respond(item)
            if answer is None:
                return  # a blocking query whose client left, or the server is stopping
            response, head_only = answer
            keep_alive = item.keep_alive and not self._ended and not server.stopping.is_set()
            if not await self._send(
                serialize(response, keep_alive=keep_alive, head_only=head_only)
            ):
                return
            inbox.answered(trio.current_time())
            self._client_clock_changed()
            self._room.set()
            if not keep_alive:
                return

    async def _respond(self, parsed: ParsedRequest) -> tuple[Response, bool] | None:
        server = self.server
        try:
            request = to_request(parsed, self.peer)
            long = server.long_request(request)
        except ValueError as exc:
            return Response.text(f"malformed request target: {exc}\n", 400), False
        server.request_started()
        try:
            with trio.CancelScope() as scope:
                self._request_scope, self._long = scope, long
                if long and self._ended in ("eof", "broken", "stopping"):
                    scope.cancel()
                try:
                    response = await server.app(request)
                except Exception:
                    log.exception(
                        "internal error on %s %s from %s", request.method, request.path, self.peer
                    )
                    response = _internal_error()
        finally:
            self._request_scope, self._long = None, False
            server.request_finished()
        if scope.cancelled_caught:
            return None
        return response, request.method == "HEAD"

    async def _send(self, data: bytes) -> bool:
        """Write to the client; False if it is gone or did not take the bytes in time."""
        with trio.move_on_after(self.server.limits.send_timeout):
            try:
                await self.stream.send_all(data)
            except _CLIENT_ERRORS:
                return False
            return True
        return False

    def _log_absorbed(self, exc: BaseException) -> None:
        leaves = list(_leaves(exc))
        if all(isinstance(leaf, _CLIENT_ERRORS) for leaf in leaves):
            log.debug(
                "connection from %s ended: %s",
                self.peer,
                "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves),
            )
        else:
            log.error("connection from %s closed after a server error", self.peer, exc_info=exc)


def _internal_error() -> Response:
    return Response.json(
        {
            "error": {
                "message": "internal server error (logged on the server)",
                "field": None,
                "status": 500,
            }
        },
        status=500,
    )


def _split(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(what must propagate: cancellation and interpreter exits, what the connection absorbs)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_FATAL)
    if isinstance(exc, _FATAL):
        return exc, None
    return None, exc


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
