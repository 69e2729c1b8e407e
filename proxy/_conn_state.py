"""The life of one downstream HTTP connection, as a table-driven state machine. Pure.

    state   event          next     note
    IDLE    head_bytes     HEAD     a request started arriving: the header timeout runs
    IDLE    request        BUSY     a whole head arrived at once
    HEAD    request        BUSY
    BUSY    response_done  IDLE     or CLOSED when the exchange left the connection unusable
    BUSY    upgraded       TUNNEL   101 Switching Protocols or CONNECT: bytes flow both ways
    IDLE    drain          CLOSED   shutdown closes idle keep-alive connections at once...
    HEAD    drain          HEAD     ...and lets a started request finish, then closes
    BUSY    drain          BUSY
    TUNNEL  drain          TUNNEL   tunnels run until the grace period ends
    *       eof/error      CLOSED
    *       timeout        CLOSED

`close_reason` collects why the connection may not carry another request (the client asked,
HTTP/1.0, a body left unread, a framing error, the proxy draining); the I/O layer asks
`keep_alive` before writing a response head. (Which timeout applies is the I/O layer's
`phase`, see `_http_forward`.)
"""

from __future__ import annotations

from ._errors import Bug


class S:
    """States (plain strings: the table is hashed on every event, and Enum hashing is slow)."""

    IDLE = "idle"
    HEAD = "head"
    BUSY = "busy"
    TUNNEL = "tunnel"
    CLOSED = "closed"
    ALL = (IDLE, HEAD, BUSY, TUNNEL, CLOSED)


class E:
    HEAD_BYTES = "head_bytes"
    REQUEST = "request"
    RESPONSE_DONE = "response_done"
    UPGRADED = "upgraded"
    DRAIN = "drain"
    EOF = "eof"
    ERROR = "error"
    TIMEOUT = "timeout"


_TABLE: dict[tuple[str, str], str] = {
    (S.IDLE, E.HEAD_BYTES): S.HEAD,
    (S.IDLE, E.REQUEST): S.BUSY,
    (S.HEAD, E.HEAD_BYTES): S.HEAD,
    (S.HEAD, E.REQUEST): S.BUSY,
    (S.BUSY, E.RESPONSE_DONE): S.IDLE,
    (S.BUSY, E.UPGRADED): S.TUNNEL,
    (S.IDLE, E.DRAIN): S.CLOSED,
    (S.HEAD, E.DRAIN): S.HEAD,
    (S.BUSY, E.DRAIN): S.BUSY,
    (S.TUNNEL, E.DRAIN): S.TUNNEL,
}
for _state in S.ALL:
    for _event in (E.EOF, E.ERROR, E.TIMEOUT):
        _TABLE[(_state, _event)] = S.CLOSED
_TABLE[(S.CLOSED, E.DRAIN)] = S.CLOSED


class InvalidTransition(Bug):
    """The I/O layer reported an event that cannot happen in the current state."""


class ConnState:
    __slots__ = ("close_reason", "requests", "state")

    def __init__(self) -> None:
        self.state = S.IDLE
        self.close_reason = ""
        self.requests = 0

    def _go(self, event: str) -> str:
        try:
            self.state = _TABLE[(self.state, event)]
        except KeyError:
            raise InvalidTransition(f"{event} in state {self.state}") from None
        return self.state

    def head_bytes(self) -> None:
        self._go(E.HEAD_BYTES)

    def request(self, *, keep_alive: bool) -> None:
        self._go(E.REQUEST)
        self.requests += 1
        if not keep_alive:
            self.must_close("the client asked to close")

    def must_close(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason

    @property
    def keep_alive(self) -> bool:
        """Whether the response being written may leave the connection open."""
        return not self.close_reason

    def response_done(self) -> str:
        self._go(E.RESPONSE_DONE)
        if self.close_reason:
            self.state = S.CLOSED
        return self.state

    def upgraded(self) -> None:
        self._go(E.UPGRADED)

    def drain(self) -> bool:
        """Shutdown began; True if the connection should be closed right now."""
        self.must_close("the proxy is shutting down")
        return self._go(E.DRAIN) == S.CLOSED

    def eof(self) -> None:
        self._go(E.EOF)

    def error(self, reason: str) -> None:
        self.must_close(reason)
        self._go(E.ERROR)

    def timeout(self) -> None:
        self._go(E.TIMEOUT)
