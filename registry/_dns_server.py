"""The DNS interface on the wire: one UDP socket and one TCP listener on the same port.

Only moves bytes; every decision is `_dns.answer`'s (or, on an agent, a server's: see
`_dns_relay.py`). Bounded against hostile clients: at most `max_inflight` UDP queries are
being answered at once and any datagram beyond that is dropped (nothing queues; the client
retries), a TCP connection holds at most one message (2 + 65,535 bytes) and must deliver each
one within `message_timeout`, a reader that stops reading is dropped when a reply cannot be
sent within the same time, and beyond `max_connections` new connections are closed at once.
"""

from __future__ import annotations

import errno
import logging
import socket as stdlib_socket

import trio

from . import _dns
from ._mirror import Mirror

log = logging.getLogger("weft.registry.dns")


class DNSListener:
    """UDP and TCP on one port, each query handed to `_answer`; subclasses decide answers."""

    def __init__(
        self,
        *,
        max_connections: int = 256,
        message_timeout: float = 10.0,
        max_inflight: int = 256,
    ) -> None:
        self.max_connections = max_connections
        self.message_timeout = message_timeout
        self.max_inflight = max_inflight
        self.connections = 0
        self.inflight = 0  # UDP queries being answered

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        tcp, udp = await _bind_pair(host, port)
        bound = tcp.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve_udp, udp)
            listener = trio.SocketListener(tcp)
            nursery.start_soon(trio.serve_listeners, self._tcp_client, [listener])
            log.info("DNS serving", extra={"kv": {"address": f"{bound[0]}:{bound[1]}"}})
            task_status.started((bound[0], bound[1]))

    async def _answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        raise NotImplementedError

    async def _serve_udp(self, sock: trio.socket.SocketType) -> None:
        with sock:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        wire, peer = await sock.recvfrom(65535)
                    except OSError:  # e.g. ICMP port unreachable reported on Linux
                        continue
                    if self.inflight >= self.max_inflight:
                        continue  # a flood: drop rather than queue
                    self.inflight += 1
                    nursery.start_soon(self._udp_reply, sock, wire, peer)

    async def _udp_reply(
        self, sock: trio.socket.SocketType, wire: bytes, peer: tuple[object, ...]
    ) -> None:
        try:
            reply = await self._answer(wire, tcp=False)
            if reply is not None:
                await sock.sendto(reply, peer)
        except OSError:
            pass
        finally:
            self.inflight -= 1

    async def _tcp_client(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.max_connections:
            await stream.aclose()
            return
        self.connections += 1
        try:
            async with stream:
                buffer = bytearray()
                while True:
                    with trio.move_on_after(self.message_timeout):
                        wire = await read_message(stream, buffer)
                        if wire is None:
                            return
                        reply = await self._answer(wire, tcp=True)
                        if reply is None:
                            return
                        await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                        continue
                    return  # too slow to send a query, or to read the answer
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.connections -= 1


class DNSServer(DNSListener):
    """The server's DNS interface: answers from the server's own copy of the catalog."""

    def __init__(
        self,
        mirror: Mirror,
        options: _dns.DNSOptions,
        *,
        max_connections: int = 256,
        message_timeout: float = 10.0,
    ) -> None:
        super().__init__(max_connections=max_connections, message_timeout=message_timeout)
        self.mirror = mirror
        self.options = options

    async def _answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            return _dns.answer(wire, self.mirror, self.options, tcp=tcp)
        except Exception:
            # A query must never take the server down; the client sees no answer and retries.
            log.exception("DNS query could not be answered")
            return None


async def read_message(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """One length-prefixed DNS message (RFC 1035 4.2.2); None at end of stream. Never reads
    past the message, so a connection holds at most 2 + 65,535 bytes."""
    while True:
        if len(buffer) >= 2:
            size = int.from_bytes(buffer[:2], "big")
            if size == 0:
                return None
            if len(buffer) >= 2 + size:
                wire = bytes(buffer[2 : 2 + size])
                del buffer[: 2 + size]
                return wire
            want = 2 + size - len(buffer)
        else:
            want = 2 - len(buffer)
        data = await stream.receive_some(want)
        if not data:
            return None
        buffer += data


async def _bind_pair(host: str, port: int) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A TCP and a UDP socket on the same port; for port 0, a port free for both."""
    family = stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET
    for _ in range(50):
        tcp = trio.socket.socket(family, stdlib_socket.SOCK_STREAM)
        udp = trio.socket.socket(family, stdlib_socket.SOCK_DGRAM)
        try:
            tcp.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            await tcp.bind((host, port))
            chosen = tcp.getsockname()[1]
            await udp.bind((host, chosen))
            tcp.listen(128)
            return tcp, udp
        except OSError as exc:
            tcp.close()
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no port free for both TCP and UDP on {host}")
