"""DNS on an agent: the host's own `127.0.0.1:8600`, answered by the servers' DNS.

As a Consul client agent asks its servers, a Weft agent relays each query to a server's DNS
interface, over the transport the client used (so a truncated UDP answer makes the client
retry over TCP, and that retry is relayed over TCP), trying the servers in turn. The agent
keeps no copy of the catalog: every answer is as current as the server's.

Bounds: the listener's (see `_dns_server.py`), plus one exchange with one server at a time per
query, each within `upstream_timeout`. A reply must come from the server asked and carry the
query's ID, so a forged datagram cannot answer for it. When no server answers, the client gets
SERVFAIL (its resolver then tries its next server or reports the failure).
"""

from __future__ import annotations

import logging
import socket as stdlib_socket
from collections.abc import Sequence

import trio

from ._dns_server import DNSListener, read_message

log = logging.getLogger("weft.registry.dns")

_SERVFAIL = 2


class DNSRelay(DNSListener):
    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        upstream_timeout: float = 2.0,
        max_connections: int = 256,
        message_timeout: float = 10.0,
    ) -> None:
        super().__init__(max_connections=max_connections, message_timeout=message_timeout)
        if not upstreams:
            raise ValueError("a DNS relay needs at least one server to ask")
        self.upstreams = list(upstreams)
        self.upstream_timeout = upstream_timeout
        self._next = 0  # the server that answered last is asked first

    async def _answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        if len(wire) < 12 or wire[2] & 0x80:
            return None  # a runt or a response: never relayed (no bouncing between servers)
        for attempt in range(len(self.upstreams)):
            index = (self._next + attempt) % len(self.upstreams)
            host, port = self.upstreams[index]
            with trio.move_on_after(self.upstream_timeout):
                try:
                    if tcp:
                        reply = await _ask_tcp(host, port, wire)
                    else:
                        reply = await _ask_udp(host, port, wire)
                except OSError as exc:
                    log.debug("DNS server %s:%s: %s", host, port, exc)
                    reply = None
                if reply is not None:
                    self._next = index
                    return reply
        log.warning("no DNS server answered", extra={"kv": {"servers": len(self.upstreams)}})
        return _servfail(wire)


async def _ask_udp(host: str, port: int, wire: bytes) -> bytes | None:
    family = stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET
    with trio.socket.socket(family, stdlib_socket.SOCK_DGRAM) as sock:
        # connect(): the kernel drops datagrams from any other address.
        await sock.connect((host, port))
        await sock.send(wire)
        while True:
            reply = await sock.recv(65535)
            if len(reply) >= 12 and reply[:2] == wire[:2] and reply[2] & 0x80:
                return reply


async def _ask_tcp(host: str, port: int, wire: bytes) -> bytes | None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(len(wire).to_bytes(2, "big") + wire)
        reply = await read_message(stream, bytearray())
    if reply is None or len(reply) < 12 or reply[:2] != wire[:2]:
        return None
    return reply


def _servfail(wire: bytes) -> bytes:
    """A bare SERVFAIL header with the query's ID, opcode and RD bit."""
    return wire[:2] + bytes([0x80 | (wire[2] & 0x79), _SERVFAIL]) + b"\0" * 8
