"""Moving one HTTP body from a source stream to a sink stream, as it arrives.

Content-Length bodies are read no further than their end, so nothing of the next message is
ever consumed; chunked bodies go through `ChunkedScanner`, which lets through only checked
framing; close-delimited bodies (responses only) run to end of stream. Nothing is buffered
beyond one receive. Stream errors come out as `SourceClosed` or `SinkClosed` so the HTTP layer
knows which side broke.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ._errors import SinkClosed, SourceClosed, StreamClosed
from ._framing import ChunkedScanner
from ._h1 import CHUNKED, LENGTH, UNTIL_CLOSE
from ._stream import RECV_SIZE, Stream

_CHECKPOINT_EVERY = 16


async def _send(sink: Stream, data: bytes | memoryview) -> None:
    try:
        await sink.send_all(data)
    except StreamClosed as exc:
        raise SinkClosed(str(exc)) from exc


async def _recv(source: Stream, size: int) -> bytes:
    try:
        data = await source.recv(size)
    except StreamClosed as exc:
        raise SourceClosed(str(exc)) from exc
    return data


class BodyMover:
    """One body's progress: `moved` payload bytes so far, `done` once it ended cleanly."""

    __slots__ = ("done", "framing", "moved", "remaining", "scanner")

    def __init__(self, framing: int, length: int, *, scanner: ChunkedScanner | None = None) -> None:
        self.framing = framing
        self.remaining = length
        self.scanner = scanner or (ChunkedScanner() if framing == CHUNKED else None)
        self.moved = 0
        self.done = False

    async def run(
        self, source: Stream, sink: Stream, pending: bytes, touch: Callable[[], None]
    ) -> bytes:
        """Move the rest of the body (`pending`: bytes already read that follow what was sent).

        `touch` is called whenever bytes arrive (it restarts an inactivity timeout). Returns
        the bytes read past the body's end (a pipelined next message), if any.
        """
        framing = self.framing
        n = 0
        if framing == LENGTH:
            if pending:
                take = pending[: self.remaining]
                await _send(sink, take)
                self.remaining -= len(take)
                self.moved += len(take)
                pending = pending[len(take) :]
            while self.remaining > 0:
                data = await _recv(source, min(self.remaining, RECV_SIZE))
                if not data:
                    raise SourceClosed(f"stream ended {self.remaining} bytes before the body's end")
                touch()
                await _send(sink, data)
                self.remaining -= len(data)
                self.moved += len(data)
                n += 1
                if n % _CHECKPOINT_EVERY == 0:
                    await trio.lowlevel.checkpoint()
            self.done = True
            return pending
        if framing == CHUNKED:
            scanner = self.scanner
            assert scanner is not None
            buf = pending
            while True:
                pos = scanner.scan(buf)
                if pos:
                    await _send(sink, buf[:pos] if pos < len(buf) else buf)
                    self.moved += pos
                    buf = buf[pos:]
                if scanner.done:
                    self.done = True
                    return buf
                data = await _recv(source, RECV_SIZE)
                if not data:
                    raise SourceClosed("stream ended inside a chunked body")
                touch()
                buf = buf + data if buf else data
                n += 1
                if n % _CHECKPOINT_EVERY == 0:
                    await trio.lowlevel.checkpoint()
        if framing == UNTIL_CLOSE:
            if pending:
                await _send(sink, pending)
                self.moved += len(pending)
            while True:
                data = await _recv(source, RECV_SIZE)
                if not data:
                    self.done = True
                    return b""
                touch()
                await _send(sink, data)
                self.moved += len(data)
                n += 1
                if n % _CHECKPOINT_EVERY == 0:
                    await trio.lowlevel.checkpoint()
        self.done = True
        return pending
