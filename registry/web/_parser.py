"""Bytes in, complete requests out: httptools with size limits, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools


class ProtocolError(Exception):
    """The client broke HTTP/1.1 or a limit; `status` is what to answer before closing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class ParsedRequest:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    http_version: str


@dataclass(slots=True)
class _Building:
    target: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    body_size: int = 0
    head_size: int = 0
    head_done: bool = False


class RequestParser:
    """Feed received bytes; get back every request completed by them.

    Smuggling defences come from llhttp (Content-Length with Transfer-Encoding, duplicate
    Content-Length, obs-fold and bad chunk sizes are errors); limits are checked here.
    """

    def __init__(
        self, *, max_head_bytes: int = 64 * 1024, max_headers: int = 100, max_body: int = 1 << 20
    ) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self._current: _Building | None = None
        self._done: list[ParsedRequest] = []
        self._error: ProtocolError | None = None
        self._begun = 0

    @property
    def in_request(self) -> bool:
        """True between the first byte of a request and its end (for read timeouts)."""
        return self._current is not None

    @property
    def phase(self) -> tuple[str, int]:
        """("idle" | "head" | "body", requests begun so far): a change starts a client clock."""
        current = self._current
        if current is None:
            return "idle", self._begun
        return ("body" if current.head_done else "head"), self._begun

    def feed(self, data: bytes) -> list[ParsedRequest]:
        if self._error:
            raise self._error
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(501, "protocol upgrades are not supported here") from None
        except httptools.HttpParserError as exc:
            if self._error:
                raise self._error from None
            raise ProtocolError(400, f"malformed HTTP request: {exc}") from None
        if self._error:
            raise self._error
        done, self._done = self._done, []
        return done

    def drain(self) -> list[ParsedRequest]:
        """Requests completed before `feed` raised (a pipelined good request before a bad one)."""
        done, self._done = self._done, []
        return done

    # httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._current = _Building()
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.target += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        current = self._current
        assert current is not None
        current.headers.append((name.lower(), value))
        self._grow_head(len(name) + len(value) + 4)
        if len(current.headers) > self.max_headers:
            self._fail(431, f"more than {self.max_headers} request headers")

    def on_headers_complete(self) -> None:
        current = self._current
        assert current is not None
        current.head_done = True
        for name, value in current.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._fail(400, "Content-Length is not a number")
                    return
                if length > self.max_body:
                    self._fail(
                        413,
                        f"request body of {length} bytes is over the limit "
                        f"of {self.max_body} bytes",
                    )

    def on_body(self, body: bytes) -> None:
        current = self._current
        assert current is not None
        current.body_size += len(body)
        if current.body_size > self.max_body:
            self._fail(413, f"request body is over the limit of {self.max_body} bytes")
        current.body.append(body)

    def on_message_complete(self) -> None:
        current = self._current
        assert current is not None
        self._current = None
        self._done.append(
            ParsedRequest(
                method=self._parser.get_method().decode("ascii", "replace"),
                target=bytes(current.target),
                headers=current.headers,
                body=b"".join(current.body),
                keep_alive=self._parser.should_keep_alive(),
                http_version=self._parser.get_http_version(),
            )
        )

    def _grow_head(self, n: int) -> None:
        current = self._current
        assert current is not None
        current.head_size += n
        if current.head_size > self.max_head_bytes:
            self._fail(431, f"request head is over the limit of {self.max_head_bytes} bytes")

    def _fail(self, status: int, message: str) -> None:
        if self._error is None:
            self._error = ProtocolError(status, message)
        # Raising inside a callback makes httptools stop parsing and raise HttpParserError.
        raise RuntimeError(message)
