"""The trio side of the HTTP server: accept within the caps, hand each connection over."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import resource
import socket as stdlib_socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ._admission import Admission, fit_under_fd_limit
from ._connection import Connection
from ._routing import Request, Response
from ._wire import serialize

log = logging.getLogger("weft.http")

App = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Limits:
    """All a client can make a server hold, and for how long (docs/security.md has the why).

    The defaults suit a daemon's small API (the adapter's probes, the demo apps); `weft server`
    and the agent fill theirs from their settings.
    """

    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body: int = 1 << 20
    head_timeout: float = 10.0  # the whole head, from its first byte; not restarted per byte
    body_timeout: float = 30.0  # the whole body, from the end of the head
    idle_timeout: float = 75.0  # keep-alive connection with no request in progress
    send_timeout: float = 30.0  # a response the client does not take in this long is dropped
    tls_handshake_timeout: float = 10.0
    read_ahead: int = 64 * 1024  # bytes held from a client while its last request is answered
    max_connections: int = 1024  # lowered at start if it does not fit under RLIMIT_NOFILE
    max_connections_per_ip: int = 256  # 0: no per-address cap (behind a load balancer)
    grace: float = 10.0  # how long in-flight requests get on shutdown


def connection_settings_problem(config: Any, prefix: str = "") -> tuple[str, str] | None:
    """(field, problem) in the settings that become `Limits`, or None. Shared by `weft server`
    and the agent, whose fields carry the `api_` prefix."""

    def get(name: str) -> Any:
        return getattr(config, prefix + name)

    if get("max_connections") < 1:
        return prefix + "max_connections", "must be at least 1"
    if get("max_connections_per_ip") < 0:
        return prefix + "max_connections_per_ip", "must be 0 (no cap) or more"
    for name in ("head_timeout", "body_timeout", "idle_timeout", "send_timeout"):
        value = get(name)
        if not 0 < value <= 3600:  # also refuses NaN
            return prefix + name, f"must be more than 0s and at most 1h, not {value}"
    if get("read_ahead_bytes") < 1024:
        return prefix + "read_ahead_bytes", "must be at least 1024"
    return None


class HTTPServer:
    """Serves `app` on one address until cancelled or `shutdown()`; drains on the way out.

    Connections over `max_connections` (or `max_connections_per_ip` from one address) are
    refused at once: plain HTTP gets a 503 with Retry-After and is closed, TLS is closed.
    """

    def __init__(
        self,
        app: App,
        *,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        # Requests that may wait a long time (blocking queries): hung up on at shutdown and
        # when the client goes away.
        long_request: Callable[[Request], bool] = lambda request: False,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self.long_request = long_request
        self.admission = Admission(self.limits.max_connections, self.limits.max_connections_per_ip)
        self.stopping = trio.Event()
        self._connections: set[Connection] = set()
        self._busy = 0
        self._drained = trio.Event()
        self._refused = 0
        self._refusal_logged = -math.inf

    async def wait_drained(self) -> None:
        """Returns once shutdown() was called and no request is in progress."""
        await self._drained.wait()

    def shutdown(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their response, and
        long requests (blocking queries, which could hold the drain for minutes) at once:
        their clients ask again, maybe another server."""
        self.stopping.set()
        for connection in list(self._connections):
            connection.stop()
        if self._busy == 0:
            self._drained.set()

    # Connection calls these around each request (the drain waits for them).
    def request_started(self) -> None:
        self._busy += 1

    def request_finished(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self.stopping.is_set():
            self._drained.set()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._fit_fd_limit()
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            accepting = trio.CancelScope()

            async def accept_all() -> None:
                with accepting:
                    async with trio.open_nursery() as accepters:
                        for listener in listeners:
                            accepters.start_soon(self._accept, listener, nursery)

            nursery.start_soon(accept_all)
            task_status.started((bound[0], bound[1]))
            await self.stopping.wait()
            accepting.cancel()
            for listener in listeners:
                await listener.aclose()
            with trio.move_on_after(self.limits.grace):
                await self._drained.wait()
            nursery.cancel_scope.cancel()

    def _fit_fd_limit(self) -> None:
        """Make room for the connection cap under RLIMIT_NOFILE, or lower the cap to fit."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fit = fit_under_fd_limit(self.admission.max_connections, soft, hard)
        if fit.soft_limit != soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fit.soft_limit, hard))
            except (ValueError, OSError):
                fit = fit_under_fd_limit(self.admission.max_connections, soft, soft)
        if fit.lowered:
            log.warning(
                "max_connections %d does not fit under the open-file limit %d "
                "(raise LimitNOFILE); taking at most %d connections",
                self.admission.max_connections,
                fit.soft_limit,
                fit.cap,
            )
        self.admission.max_connections = fit.cap

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # Out of descriptors or memory: the caps should prevent it, but if not, back
                # off rather than spin; the connections already open keep being served.
                log.warning("cannot accept a connection: %s; retrying in 0.1s", exc)
                await trio.sleep(0.1)
                continue
            try:
                ip = stream.socket.getpeername()[0]
            except OSError:
                stream.socket.close()  # reset before we got to it
                continue
            refused = self.admission.admit(ip)
            if refused is not None:
                self._refuse(stream, refused)
                continue
            nursery.start_soon(self._serve_connection, stream, ip)

    async def _serve_connection(self, stream: trio.SocketStream, ip: str) -> None:
        connection = Connection(self, stream, ip)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self.admission.release(ip)

    def _refuse(self, stream: trio.SocketStream, reason: str) -> None:
        """Answer 503 and close, without a task: a flood of refusals costs no memory."""
        sock = stream.socket
        try:
            if self.ssl_context is None:
                fd = sock.fileno()
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)  # what already arrived: closing over it would reset
                with contextlib.suppress(OSError):
                    os.write(fd, _refusal(reason))
                    sock.shutdown(stdlib_socket.SHUT_WR)
        finally:
            sock.close()
        self._refused += 1
        now = trio.current_time()
        if now - self._refusal_logged >= 10:
            log.warning(
                "refusing connections: %s (%d refused so far)",
                reason,
                self._refused,
                extra={"kv": {"refused": self._refused}},
            )
            self._refusal_logged = now


_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _refusal(reason: str) -> bytes:
    response = Response.text(f"{reason}; try again shortly\n", 503)
    response.headers.append(("Retry-After", "1"))
    return serialize(response, keep_alive=False)
