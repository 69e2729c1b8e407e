"""Sockets and TLS driven directly by trio's I/O readiness waits: the proxy's byte movers.

Why not `trio.SocketStream`/`trio.SSLStream`: the proxy moves every request's bytes four
times, and measured here a TLS echo costs 32 µs of CPU per round trip through `SSLStream`
(its MemoryBIO shuffling runs in Python) against 15.5 µs with a non-blocking `ssl.SSLSocket`
whose reads and writes OpenSSL does on the socket itself. So a `Stream` tries the operation
first and only waits (`wait_readable`/`wait_writable`) when the kernel or OpenSSL says it
would block; a read that can be served at once does not go through the scheduler at all.
Loops that may never block (splicing) call `trio.lowlevel.checkpoint()` now and then.

Socket and `ssl` errors become `StreamClosed` here; handshake failures become `TlsRefused`
carrying a short reason for metrics (`classify_handshake_error`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from trio.lowlevel import RunVar, wait_writable
from trio.lowlevel import notify_closing as _trio_notify_closing
from trio.lowlevel import wait_readable as _trio_wait_readable

from ._errors import ConnectFailed, ListenerError, StreamClosed, TlsRefused
from ._reactor import Reactor

# The run's Reactor (see `_reactor`), when the runtime started one: streams then wait for
# readability through it (no `epoll_ctl` per wait); otherwise through trio's IO manager.
REACTOR: RunVar[Reactor | None] = RunVar("weft_reactor", default=None)


async def wait_readable(sock: Any) -> None:
    reactor = REACTOR.get()
    if reactor is None:
        await _trio_wait_readable(sock)
    else:
        await reactor.wait_readable(sock)


async def run_reactor(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Make a Reactor this run's, and run it until cancelled (streams fall back to trio's
    waits afterwards)."""
    reactor = Reactor()
    REACTOR.set(reactor)
    try:
        task_status.started()
        await reactor.run()
    finally:
        REACTOR.set(None)


def use_trio_waits() -> None:
    """Say, for this run, that no Reactor runs: `REACTOR.get()` then finds its value rather
    than raising (and catching) a KeyError inside trio on every wait (0.77 against 0.31 µs
    here, three to four waits per request and proxy)."""
    if REACTOR.get() is None:
        REACTOR.set(None)


def notify_closing(sock: socket.socket) -> None:
    """Wake whoever waits on `sock` (in trio's IO manager or the reactor): it is closing."""
    reactor = REACTOR.get()
    if reactor is not None:
        reactor.notify_closing(sock)
    _trio_notify_closing(sock)


RECV_SIZE = 65536
_Waiter = Callable[[Any], Awaitable[None]]
_FATAL_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def classify_handshake_error(exc: BaseException) -> str:
    """A short, stable label for why a handshake failed (the `reason` of the metric)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == 10:
            return "expired_certificate"
        if code == 9:
            return "certificate_not_yet_valid"
        if code in (2, 18, 19, 20, 21):
            return "unknown_ca"
        return "bad_certificate"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "eof"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "no_client_certificate"
        if reason == "HTTP_REQUEST":
            return "plaintext_http"
        if reason in (
            "UNSUPPORTED_PROTOCOL",
            "WRONG_VERSION_NUMBER",
            "TLSV1_ALERT_PROTOCOL_VERSION",
            "NO_PROTOCOLS_AVAILABLE",
            "VERSION_TOO_LOW",
        ):
            return "protocol_version"
        if reason in ("NO_SHARED_CIPHER", "NO_SUITABLE_SIGNATURE_ALGORITHM"):
            return "no_shared_cipher"
        if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
            return "peer_requires_certificate"
        if "ALERT" in reason:
            return "peer_refused_certificate"
        return "tls_error"
    if isinstance(exc, ConnectionError | OSError):
        return "eof"
    return "tls_error"


class Stream:
    """A connected non-blocking TCP socket."""

    __slots__ = ("_poller", "closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False
        self._poller: select.poll | None = None

    async def recv(self, max_bytes: int = RECV_SIZE) -> bytes:
        """Some bytes (at least one), or b"" at end of stream."""
        sock = self.sock
        while True:
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise StreamClosed(f"receive failed: {exc}") from exc
            try:
                await wait_readable(sock)
            except trio.ClosedResourceError as exc:
                raise StreamClosed("stream closed while receiving") from exc

    async def recv_later(self, max_bytes: int = RECV_SIZE) -> bytes:
        """`recv` for when the peer needs time first (a request was just sent, or an answer):
        wait for readability before reading, rather than try a read that would fail."""
        sock = self.sock
        try:
            await wait_readable(sock)
        except trio.ClosedResourceError as exc:
            raise StreamClosed("stream closed while receiving") from exc
        try:
            return sock.recv(max_bytes)
        except BlockingIOError:
            return await self.recv(max_bytes)  # woken, yet nothing to read: wait again
        except OSError as exc:
            raise StreamClosed(f"receive failed: {exc}") from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise StreamClosed(f"send failed: {exc}") from exc
        if sent == len(data):
            return
        view = memoryview(data)
        total = len(view)
        while sent < total:
            try:
                await wait_writable(sock)
                sent += sock.send(view[sent:])
            except BlockingIOError:
                continue
            except trio.ClosedResourceError as exc:
                raise StreamClosed("stream closed while sending") from exc
            except OSError as exc:
                raise StreamClosed(f"send failed: {exc}") from exc

    def shutdown_write(self) -> None:
        """Tell the peer no more bytes will come (half-close), keeping the read side open."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stale(self) -> bool:
        """For an idle pooled connection: True if the peer closed it or sent something.

        A zero-timeout poll (a third of the cost of a MSG_PEEK read, which raises when the
        connection is fine): readable means end of stream or bytes nobody asked for; either
        way it is not a connection to reuse.
        """
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        sock = self.sock
        try:
            notify_closing(sock)
        except (ValueError, OSError):
            pass
        sock.close()


class TlsStream(Stream):
    """A non-blocking `ssl.SSLSocket`: OpenSSL reads and writes the socket itself."""

    __slots__ = ()

    sock: ssl.SSLSocket

    async def handshake(self) -> None:
        sock = self.sock
        waiter: _Waiter
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                waiter = wait_readable
            except ssl.SSLWantWriteError:
                waiter = wait_writable
            except (ssl.SSLError, OSError) as exc:
                raise TlsRefused(
                    f"TLS handshake failed: {exc}", classify_handshake_error(exc)
                ) from exc
            try:
                await waiter(sock)
            except trio.ClosedResourceError as exc:
                raise TlsRefused("stream closed during the TLS handshake", "eof") from exc

    async def recv(self, max_bytes: int = RECV_SIZE) -> bytes:
        sock = self.sock
        waiter: _Waiter
        while True:
            try:
                return sock.recv(max_bytes)
            except ssl.SSLWantReadError:
                waiter = wait_readable
            except ssl.SSLWantWriteError:
                waiter = wait_writable
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise TlsRefused(f"TLS error: {exc}", classify_handshake_error(exc)) from exc
            except OSError as exc:
                raise StreamClosed(f"receive failed: {exc}") from exc
            try:
                await waiter(sock)
            except trio.ClosedResourceError as exc:
                raise StreamClosed("stream closed while receiving") from exc

    async def recv_later(self, max_bytes: int = RECV_SIZE) -> bytes:
        sock = self.sock
        if not sock.pending():  # OpenSSL may hold decrypted bytes the kernel does not
            try:
                await wait_readable(sock)
            except trio.ClosedResourceError as exc:
                raise StreamClosed("stream closed while receiving") from exc
            try:
                return sock.recv(max_bytes)
            except ssl.SSLWantReadError:
                pass  # half a record so far: wait for the rest below
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise TlsRefused(f"TLS error: {exc}", classify_handshake_error(exc)) from exc
            except OSError as exc:
                raise StreamClosed(f"receive failed: {exc}") from exc
        return await self.recv(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # Without SSL_MODE_ENABLE_PARTIAL_WRITE a TLS write is all or nothing; after a
        # WANT_* error it is retried with the same bytes.
        sock = self.sock
        waiter: _Waiter
        while True:
            try:
                sock.send(data)
                return
            except ssl.SSLWantWriteError:
                waiter = wait_writable
            except ssl.SSLWantReadError:
                waiter = wait_readable
            except (ssl.SSLError, OSError) as exc:
                raise StreamClosed(f"send failed: {exc}") from exc
            try:
                await waiter(sock)
            except trio.ClosedResourceError as exc:
                raise StreamClosed("stream closed while sending") from exc

    def shutdown_write(self) -> None:
        """Send TLS close_notify (TLS 1.3 allows reading on afterwards)."""
        try:
            self.sock.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # close_notify went out; the peer's own comes later, or never
        except (ssl.SSLError, OSError, ValueError):
            pass

    def stale(self) -> bool:
        if self.sock.pending():
            return True
        return super().stale()

    @property
    def alpn(self) -> str | None:
        return self.sock.selected_alpn_protocol()

    @property
    def session(self) -> ssl.SSLSession | None:
        return self.sock.session


def bind_listener(address: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening non-blocking socket; ListenerError names the address on failure."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from exc
    return sock


async def accept(listener: socket.socket) -> socket.socket:
    """The next connection, non-blocking with TCP_NODELAY set."""
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            await _trio_wait_readable(listener)
            continue
        except OSError as exc:
            if exc.errno in _FATAL_ACCEPT:
                # Out of descriptors or memory: wait for some to free up rather than spin.
                await trio.sleep(0.1)
                continue
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("listener closed") from exc
            continue  # ECONNABORTED and friends: that client is gone, take the next
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


async def connect(host: str, port: int, *, timeout: float) -> socket.socket:
    """A connected non-blocking socket; ConnectFailed (reason `connect_*`) otherwise."""
    with trio.move_on_after(timeout) as scope:
        if _is_ip(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            address: tuple[Any, ...] = (host, port)
        else:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ConnectFailed(f"cannot resolve {host}: {exc}", reason="dns") from exc
            family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            err = sock.connect_ex(address)
            if err == errno.EINPROGRESS:
                await wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                reason = "connect_refused" if err == errno.ECONNREFUSED else "connect_error"
                raise ConnectFailed(
                    f"cannot connect to {host}:{port}: {os.strerror(err)}", reason=reason
                )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except BaseException:
            try:
                notify_closing(sock)
            except (ValueError, OSError):
                pass
            sock.close()
            raise
    assert scope.cancelled_caught
    raise ConnectFailed(
        f"cannot connect to {host}:{port}: no answer within {timeout:g}s", reason="connect_timeout"
    )
