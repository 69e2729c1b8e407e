"""One HTTP/2 connection driven over a `Stream`: the `h2` library frames, this moves bytes.

`h2.connection.H2Connection` is a pure state machine (bytes in, events out, like h11); this
module only reads the socket, feeds it, hands each stream's events to that stream's `Inbox`
and writes what it wants sent. The same class serves both ends: downstream (`client=False`:
an application's h2c or another sidecar's h2 over mTLS) and upstream (`client=True`: a
multiplexed connection to an endpoint, shared by the requests balanced onto it).

Memory is bounded by flow control, not by hope:
- credit is granted (`ack`) only once received DATA has been written onward, so a stream
  whose receiver does not read holds at most one stream window (`STREAM_WINDOW`) here;
- the reader writes out what the peer's frames made the library answer (SETTINGS and PING
  acks, RST_STREAM) before it reads more, so a peer that sends without reading stalls itself
  in TCP instead of growing a buffer here;
- `_h2_limits.Budgets` bounds what a hostile peer may make the proxy do per second: stream
  resets (CVE-2023-44487, "rapid reset"), SETTINGS and PING frames; beyond them the
  connection gets GOAWAY ENHANCE_YOUR_CALM and is closed. CONTINUATION floods are bounded
  by the library (64 frames) and the header list by `MAX_HEADER_LIST_SIZE`; streams by
  SETTINGS_MAX_CONCURRENT_STREAMS (a peer that exceeds it loses the connection).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio
from hyperframe.frame import GoAwayFrame

from ._errors import ProxyError, StreamClosed
from ._h2_limits import Budgets
from ._stream import Stream

log = logging.getLogger("weft.proxy")

STREAM_WINDOW = 256 * 1024  # per stream: what one stream may have buffered here at most
CONNECTION_WINDOW = 4 * 1024 * 1024
MAX_CONCURRENT_STREAMS = 100
MAX_HEADER_LIST_SIZE = 64 * 1024
MAX_FRAME_SIZE = 16384

Headers = list[tuple[bytes, bytes]]


class H2Closed(ProxyError):
    """The connection (or this stream) ended before the exchange did."""

    def __init__(self, message: str, *, code: int = 0, unprocessed: bool = False) -> None:
        super().__init__(message)
        self.code = code  # an h2 error code (RST_STREAM / GOAWAY)
        # The peer said it never processed the stream (REFUSED_STREAM, or above a GOAWAY's
        # last stream id): safe to send again, anywhere.
        self.unprocessed = unprocessed


class _Refused(Exception):
    """The peer went past a budget (`_h2_limits`): GOAWAY ENHANCE_YOUR_CALM was sent."""


class Inbox:
    """One stream's received events, in order. Bounded by the stream's flow-control window
    (DATA) and by the header list limit (HEADERS): nothing here grows without the peer being
    allowed to send it."""

    __slots__ = ("_events", "_wake", "closed")

    def __init__(self) -> None:
        self._events: collections.deque[Any] = collections.deque()
        self._wake = trio.Event()
        self.closed: H2Closed | None = None

    def put(self, event: Any) -> None:
        self._events.append(event)
        self._wake.set()

    def fail(self, error: H2Closed) -> None:
        if self.closed is None:
            self.closed = error
        self._wake.set()

    def ready(self) -> bool:
        """An event can be taken without waiting."""
        return bool(self._events)

    async def get(self) -> Any:
        while not self._events:
            if self.closed is not None:
                raise self.closed
            await self._wake.wait()
            self._wake = trio.Event()
        return self._events.popleft()


def _settings(client: bool) -> dict[h2.settings.SettingCodes, int]:
    s = {
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    }
    if not client:
        s[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = MAX_CONCURRENT_STREAMS
    return s


class H2Session:
    """Reads and writes one HTTP/2 connection. `run` until it ends; `on_request` (server side)
    is called with (stream_id, headers, ended) for each new request stream."""

    def __init__(
        self,
        stream: Stream,
        *,
        client: bool,
        on_request: Callable[[int, Headers, bool], None] | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=client, header_encoding=None, validate_inbound_headers=True
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=client, initial_values=_settings(client)
        )
        self.stream = stream
        self.client = client
        self.on_request = on_request
        self.budgets = budgets or Budgets()
        self.inboxes: dict[int, Inbox] = {}
        self._send_lock = trio.Lock()
        self._window = trio.Event()  # set when the peer grants credit (or settings change)
        self.closed: H2Closed | None = None
        self.goaway_sent = False
        self.remote_goaway = False
        self.refused_hostile = ""  # why the connection was closed on a peer, if it was
        self.on_reset: Callable[[int], None] | None = None  # server: the peer reset a stream
        self.last_used = 0.0
        self._pending = b""

    # -- setup and teardown --------------------------------------------------------------

    async def start(self, preface: bytes = b"") -> None:
        """Send our preface and settings; `preface` is what detection already read."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        await self.flush()
        self._pending = preface  # fed by `run`, where the peer's errors are answered

    @property
    def open_streams(self) -> int:
        return len(self.inboxes)

    def capacity(self) -> int:
        """How many more streams this (client) connection may open now."""
        if self.closed is not None or self.remote_goaway:
            return 0
        limit = self.h2.remote_settings.max_concurrent_streams
        return min(limit, MAX_CONCURRENT_STREAMS) - len(self.inboxes)

    def close(self, error: H2Closed) -> None:
        if self.closed is None:
            self.closed = error
        for inbox in self.inboxes.values():
            inbox.fail(error)
        self._window.set()
        self.stream.close()

    async def goaway(self, code: int = 0) -> None:
        """Graceful: no new streams; those already open finish (drain).

        The frame is written here rather than by the library, whose state machine would
        close the connection at once and refuse the answers still to send."""
        if self.goaway_sent or self.closed is not None:
            return
        self.goaway_sent = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = code
        try:
            async with self._send_lock:
                await self.stream.send_all(self.h2.data_to_send() + frame.serialize())
        except StreamClosed:
            pass

    # -- sending -------------------------------------------------------------------------

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.h2.data_to_send()
            if data:
                try:
                    await self.stream.send_all(data)
                except StreamClosed as exc:
                    error = H2Closed(f"the HTTP/2 connection broke: {exc}")
                    self.close(error)
                    raise error from exc

    def open_stream(self) -> tuple[int, Inbox]:
        stream_id = self.h2.get_next_available_stream_id()
        inbox = self.inboxes[stream_id] = Inbox()
        return stream_id, inbox

    def inbox(self, stream_id: int) -> Inbox:
        inbox = self.inboxes.get(stream_id)
        if inbox is None:
            inbox = self.inboxes[stream_id] = Inbox()
        return inbox

    async def send_headers(
        self, stream_id: int, headers: Headers, *, end: bool = False, flush: bool = True
    ) -> None:
        """`flush=False` leaves the frame for the next flush: a caller with more to send at
        once (a body, trailers) writes it all in one syscall."""
        self._check()
        with _stream_errors(stream_id):
            self.h2.send_headers(stream_id, headers, end_stream=end)
        if flush:
            await self.flush()

    async def send_data(
        self, stream_id: int, data: bytes, *, end: bool = False, flush: bool = True
    ) -> None:
        """Send `data` as the peer's windows allow: waits (never buffers) while they are
        shut, which is how a slow reader slows its writer down."""
        view = memoryview(data)
        while view:
            self._check()
            # Take the event before reading the window: credit granted from here on sets it.
            if self._window.is_set():
                self._window = trio.Event()
            granted = self._window
            window = self.window(stream_id)
            if window <= 0:
                await self.flush()  # what is framed goes out before waiting for credit
                await granted.wait()
                continue
            n = min(window, len(view), self.h2.max_outbound_frame_size)
            with _stream_errors(stream_id):
                self.h2.send_data(stream_id, view[:n].tobytes(), end_stream=end and n == len(view))
            view = view[n:]
            if view or flush:
                await self.flush()
        if end and not data:
            with _stream_errors(stream_id):
                self.h2.end_stream(stream_id)
            if flush:
                await self.flush()

    def new_stream_window(self) -> int:
        """What a stream not yet opened may send at once."""
        return min(
            self.h2.outbound_flow_control_window, self.h2.remote_settings.initial_window_size
        )

    def window(self, stream_id: int) -> int:
        """What may be sent on the stream now (its window and the connection's)."""
        with _stream_errors(stream_id):
            return self.h2.local_flow_control_window(stream_id)

    async def end(
        self, stream_id: int, trailers: Headers | None = None, *, flush: bool = True
    ) -> None:
        self._check()
        with _stream_errors(stream_id):
            if trailers:
                self.h2.send_headers(stream_id, trailers, end_stream=True)
            else:
                self.h2.end_stream(stream_id)
        if flush:
            await self.flush()

    async def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self.inboxes.pop(stream_id, None)
        if self.closed is not None:
            return
        try:
            self.h2.reset_stream(stream_id, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # closed meanwhile; what other streams framed still goes out below
        try:
            await self.flush()
        except (StreamClosed, H2Closed):
            pass

    async def ack(self, stream_id: int, length: int, *, flush: bool = True) -> None:
        """Received DATA of `length` bytes was written onward: the peer may send that much
        more. (The library batches the WINDOW_UPDATEs.)"""
        if length <= 0 or self.closed is not None:
            return
        try:
            self.h2.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, KeyError):
            return
        if not flush:
            return
        try:
            await self.flush()
        except (StreamClosed, H2Closed):
            pass

    def forget(self, stream_id: int) -> None:
        self.inboxes.pop(stream_id, None)

    def _check(self) -> None:
        if self.closed is not None:
            raise self.closed

    # -- receiving -----------------------------------------------------------------------

    async def run(self) -> None:
        """Read until the connection ends; every stream waiting on it then fails."""
        error = H2Closed("the HTTP/2 connection closed")
        try:
            while self.closed is None:
                data, self._pending = self._pending or await self.stream.recv(), b""
                if not data:
                    break
                await self._feed(data)
                if self.goaway_sent and not self.inboxes and not self.client:
                    break
        except _Refused as exc:
            error = H2Closed(str(exc))
            await self._linger()
        except StreamClosed as exc:
            error = H2Closed(f"the HTTP/2 connection broke: {exc}")
        except H2Closed as exc:
            error = exc
        except h2.exceptions.ProtocolError as exc:
            error = H2Closed(f"HTTP/2 protocol error from the peer: {exc}")
            log.info("HTTP/2 connection refused", extra={"kv": {"error": str(exc)}})
            try:
                await self.flush()  # the library's GOAWAY
            except (StreamClosed, H2Closed):
                pass
            else:
                await self._linger()
        finally:
            self.close(error)

    async def _linger(self) -> None:
        """After a GOAWAY for a protocol error: stop sending and drop what still arrives for a
        moment (at most 1 s, 1 MiB), so that closing does not reset the connection and
        destroy the GOAWAY, which says why, before the peer has read it."""
        self.stream.shutdown_write()
        received = 0
        with trio.move_on_after(1):
            while received < 1 << 20:
                try:
                    data = await self.stream.recv()
                except StreamClosed:
                    return
                if not data:
                    return
                received += len(data)

    async def _feed(self, data: bytes) -> None:
        events = self.h2.receive_data(data)
        for event in events:
            self._dispatch(event)
            if self.refused_hostile:
                log.info("HTTP/2 peer refused", extra={"kv": {"reason": self.refused_hostile}})
                self.h2.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                await self.flush()
                raise _Refused(f"closed: {self.refused_hostile}")
        await self.flush()

    def _dispatch(self, event: Any) -> None:
        budgets = self.budgets
        if isinstance(event, h2.events.RequestReceived):
            ended = event.stream_ended is not None
            self.inboxes[event.stream_id] = Inbox()
            if self.on_request is not None:
                self.on_request(event.stream_id, list(event.headers), ended)
            if ended:
                self.inboxes[event.stream_id].put(event.stream_ended)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self._to(event.stream_id, event)
        elif isinstance(event, h2.events.ResponseReceived):
            self._to(event.stream_id, event)
            if event.stream_ended is not None:
                self._to(event.stream_id, event.stream_ended)
        elif isinstance(event, h2.events.DataReceived):
            inbox = self.inboxes.get(event.stream_id)
            if inbox is None:  # a stream we gave up on: its credit goes back at once
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                inbox.put(event)
            if event.stream_ended is not None:
                self._to(event.stream_id, event.stream_ended)
        elif isinstance(event, h2.events.TrailersReceived):
            self._to(event.stream_id, event)
            self._to(event.stream_id, event.stream_ended)
        elif isinstance(event, h2.events.StreamEnded):
            self._to(event.stream_id, event)
        elif isinstance(event, h2.events.StreamReset):
            if event.remote_reset and not budgets.reset(trio.current_time()):
                self.refused_hostile = "too many stream resets (rapid reset)"
            inbox = self.inboxes.pop(event.stream_id, None)
            if self.on_reset is not None:
                self.on_reset(event.stream_id)
            if inbox is not None:
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                inbox.fail(
                    H2Closed(
                        f"the peer reset the stream ({_code_name(event.error_code)})",
                        code=event.error_code,
                        unprocessed=refused,
                    )
                )
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            if isinstance(event, h2.events.RemoteSettingsChanged) and not budgets.settings(
                trio.current_time()
            ):
                self.refused_hostile = "too many SETTINGS frames"
            self._window.set()
        elif isinstance(event, h2.events.PingReceived):
            if not budgets.ping(trio.current_time()):
                self.refused_hostile = "too many PING frames"
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.remote_goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id, inbox in list(self.inboxes.items()):
                if stream_id > last and self.client:
                    self.inboxes.pop(stream_id)
                    inbox.fail(
                        H2Closed(
                            "the peer sent GOAWAY before processing the stream",
                            code=event.error_code or 0,
                            unprocessed=True,
                        )
                    )
            if event.error_code:
                self.closed = H2Closed(f"GOAWAY {_code_name(event.error_code)} from the peer")
                for inbox in self.inboxes.values():
                    inbox.fail(self.closed)

    def _to(self, stream_id: int, event: Any) -> None:
        inbox = self.inboxes.get(stream_id)
        if inbox is not None:
            inbox.put(event)


@contextlib.contextmanager
def _stream_errors(stream_id: int) -> Iterator[None]:
    """A stream the peer closed or reset meanwhile is this stream's end, not a bug."""
    try:
        yield
    except h2.exceptions.StreamClosedError as exc:
        raise H2Closed(f"stream {stream_id} is closed", code=exc.error_code) from exc
    except h2.exceptions.ProtocolError as exc:
        raise H2Closed(f"stream {stream_id}: {exc}") from exc


def _code_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)
