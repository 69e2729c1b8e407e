"""A raw keep-alive HTTP/1.1 client for benchmarks (httptools), so the load generator is cheap."""

from __future__ import annotations

import httptools
import trio


class _Response:
    def __init__(self) -> None:
        self.done = 0
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self._chunks: list[bytes] = []

    def on_message_begin(self) -> None:
        self._chunks = []

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_status(self, status: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        self.body = b"".join(self._chunks)
        self.done += 1


class Conn:
    """One keep-alive HTTP/1.1 connection, parsed with httptools."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.state = _Response()
        self.parser = httptools.HttpResponseParser(self.state)

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, request: bytes) -> None:
        await self.stream.send_all(request)

    async def response(self) -> tuple[int, dict[bytes, bytes]]:
        while not self.state.done:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.parser.feed_data(data)
        self.state.done -= 1
        return self.parser.get_status_code(), self.state.headers


def request(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-Consul-Token: {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
