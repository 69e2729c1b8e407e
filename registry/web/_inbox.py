"""One connection's requests, handed out one at a time as they are answered. No I/O, no clock.

A client that pipelines requests and never reads the answers must not make the server buffer
them. Received bytes go to the parser only while no request is waiting for its answer; later
bytes are held, and once `read_ahead` bytes are held the reader stops reading, so TCP pushes
back on the client. A connection therefore holds at most one body in progress (`max_body`),
the requests parsed from one receive, and `read_ahead` (plus one receive) of held bytes.

The client's clocks live here too. The whole request head must arrive within `head_timeout`
of its first byte, and the whole body within `body_timeout` of the end of the head: neither
restarts when a byte arrives, so trickling a byte at a time (slowloris) is cut. A keep-alive
connection with nothing in progress gets `idle_timeout`. While the server is working on a
request the client has no clock at all: a parked blocking query is not a slow client, and a
request that was pipelined behind it starts its clock only when the server turns to it.
"""

from __future__ import annotations

import math
from collections import deque

from ._parser import ParsedRequest, ProtocolError, RequestParser


class Inbox:
    def __init__(
        self,
        parser: RequestParser,
        *,
        read_ahead: int,
        head_timeout: float,
        body_timeout: float,
        idle_timeout: float,
        now: float,
    ) -> None:
        self._parser = parser
        self.read_ahead = read_ahead
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self._ready: deque[ParsedRequest] = deque()
        self._held = bytearray()
        self._error: ProtocolError | None = None
        self._answering = False
        self._phase = parser.phase
        self._since = now  # when the current phase (idle, head or body) began

    # -- what the reader does ------------------------------------------------------------------

    @property
    def wants_bytes(self) -> bool:
        """False once the client has sent more than the server will hold: stop reading."""
        return self._error is None and len(self._held) < self.read_ahead

    def receive(self, data: bytes, now: float) -> None:
        if self._error is not None:
            return
        if self._answering or self._ready or self._held:
            self._held += data
            return
        self._feed(data, now)

    def deadline(self) -> float:
        """When the client's time is up: the head, the body or the idle clock (inf: no clock)."""
        if self._answering or self._ready or self._error is not None:
            return math.inf
        return self._since + self._timeout()

    @property
    def waiting_for(self) -> str:
        """What the client owes: "head" or "body" of a request, or "" (idle between requests)."""
        if self._answering or self._ready:
            return ""
        phase = self._phase[0]
        return "" if phase == "idle" else phase

    @property
    def idle(self) -> bool:
        """Nothing in progress: no request being answered, parsed, half-received or held."""
        return (
            not self._answering
            and not self._ready
            and not self._held
            and self._error is None
            and self._phase[0] == "idle"
        )

    # -- what the answering side does ----------------------------------------------------------

    def take(self) -> ParsedRequest | ProtocolError | None:
        """The next request to answer, an error to answer before closing, or None (nothing yet).

        A request handed out keeps the connection busy until `answered`: responses go out in
        the order the requests came.
        """
        if self._answering:
            return None
        if self._ready:
            self._answering = True
            return self._ready.popleft()
        return self._error

    def answered(self, now: float) -> None:
        """The last request taken has been answered: parse what the client sent meanwhile."""
        self._answering = False
        self._since = now  # the server's time spent answering is not charged to the client
        if not self._ready and self._held:
            data, self._held = bytes(self._held), bytearray()
            self._feed(data, now)

    # ------------------------------------------------------------------------------------------

    def _feed(self, data: bytes, now: float) -> None:
        try:
            self._ready.extend(self._parser.feed(data))
        except ProtocolError as exc:
            self._ready.extend(self._parser.drain())
            self._error = exc
        phase = self._parser.phase
        if phase != self._phase:
            self._phase = phase
            self._since = now

    def _timeout(self) -> float:
        phase = self._phase[0]
        if phase == "head":
            return self.head_timeout
        if phase == "body":
            return self.body_timeout
        return self.idle_timeout
