"""Chunked bodies walked byte for byte, never decoded and never buffered whole. Pure.

The proxy forwards a chunked body verbatim, so it does not need the payload, only to know
where the body ends and that every chunk-size line is one both it and the application read
the same way. `ChunkedScanner.scan` consumes whole framing units only: a size line or the CRLF
after a chunk that is cut by the end of the buffer stays unconsumed, so no byte is forwarded
before it has been checked; the caller keeps the rest and appends what it receives next.
"""

from __future__ import annotations

import re

from ._errors import HttpError
from ._hop_by_hop import FRAMING_CRITICAL, is_identity_header

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"[^"\x00-\x08\x0a-\x1f\x7f]*"'
_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*")

MAX_LINE = 4096
MAX_TRAILER_BYTES = 16 * 1024


def _bad(status: int, reason: str) -> HttpError:
    return HttpError(status, reason, label="bad_chunked_framing")


def parse_chunk_size(line: bytes, status: int = 400) -> int:
    """The size of a chunk from its size line (without CRLF); extensions are allowed."""
    semi = line.find(b";")
    digits, ext = (line, b"") if semi < 0 else (line[:semi], line[semi:])
    if not _HEX.fullmatch(digits.rstrip(b" \t")):
        raise _bad(status, f"invalid chunk size {line[:40]!r}")
    if ext and not _EXT.fullmatch(line[len(digits.rstrip(b" \t")) :]):
        raise _bad(status, f"invalid chunk extension in {line[:40]!r}")
    size = int(digits, 16)
    if size >= 1 << 62:
        raise _bad(status, f"chunk size {line[:40]!r} is too large")
    return size


class ChunkedScanner:
    """Finds the end of a chunked body, checking its framing as it goes."""

    __slots__ = ("_remaining", "_state", "_status", "_trailer_bytes", "body_bytes")

    def __init__(self, *, status: int = 400) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._trailer_bytes = 0
        self._status = status  # 400 for requests, 502 for responses
        self.body_bytes = 0  # payload bytes seen (chunk data only)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def scan(self, buf: bytes | bytearray, pos: int = 0) -> int:
        """Consume framing units of `buf` from `pos`; return the position reached.

        Everything before the returned position belongs to the body and has been checked.
        When `done` becomes true the position is just past the body's last byte.
        """
        n = len(buf)
        status = self._status
        while True:
            state = self._state
            if state == _DATA:
                avail = n - pos
                if avail <= 0:
                    return pos
                if avail < self._remaining:
                    self._remaining -= avail
                    self.body_bytes += avail
                    return n
                pos += self._remaining
                self.body_bytes += self._remaining
                self._remaining = 0
                self._state = _DATA_END
            elif state == _DATA_END:
                if n - pos < 2:
                    if n - pos == 1 and buf[pos] != 13:
                        raise _bad(status, "chunk data is not followed by CRLF")
                    return pos
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise _bad(status, "chunk data is not followed by CRLF")
                pos += 2
                self._state = _SIZE
            elif state == _SIZE:
                end = buf.find(b"\r\n", pos, pos + MAX_LINE + 2)
                if end < 0:
                    if n - pos > MAX_LINE:
                        raise _bad(status, "chunk size line is too long")
                    if b"\n" in buf[pos:n]:
                        raise _bad(status, "chunk size line ends without CR")
                    return pos
                line = bytes(buf[pos:end])
                if b"\n" in line or b"\r" in line:
                    raise _bad(status, "bare CR or LF in a chunk size line")
                size = parse_chunk_size(line, status)
                pos = end + 2
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            elif state == _TRAILER:
                end = buf.find(b"\r\n", pos, pos + MAX_LINE + 2)
                if end < 0:
                    if n - pos > MAX_LINE:
                        raise _bad(status, "trailer field line is too long")
                    return pos
                line = bytes(buf[pos:end])
                pos = end + 2
                if not line:
                    self._state = _DONE
                    return pos
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > MAX_TRAILER_BYTES:
                    raise _bad(status, "trailer section is too large")
                if not _FIELD.fullmatch(line):
                    raise _bad(status, f"invalid trailer field {line[:40]!r}")
                if status == 400:
                    name = line[: line.find(b":")].lower()
                    # Trailers are forwarded verbatim, so an identity header cannot be
                    # stripped from one, and a framing field there is forbidden (RFC 9110
                    # §6.5.1) yet some servers merge trailers into the head: refuse both.
                    if is_identity_header(name) or name in FRAMING_CRITICAL:
                        raise _bad(status, f"{line[:40]!r} is not allowed in a request trailer")
            else:
                return pos
