"""Opaque forwarding: bytes both ways between two streams until both directions end.

Used for TCP upstreams, for the inbound side of opaque connections, after `101 Switching
Protocols` (WebSocket) and for CONNECT tunnels. When one side ends its stream the other side
is half-closed (TCP FIN or TLS close_notify), so request/response protocols that rely on
half-close still see it; a reset on either side ends both directions.

An idle timeout bounds every splice: when no byte has moved either way for `idle_timeout`
seconds (a peer that went silent, or one that stopped reading so that our writes stall), both
directions end. One watchdog task per splice sleeps until the last activity plus the timeout;
the pumps only record the time of each move, so the cost per chunk is one clock read.
"""

from __future__ import annotations

import math

import trio

from ._errors import StreamClosed
from ._stream import RECV_SIZE, Stream

_CHECKPOINT_EVERY = 16


class Counter:
    """Bytes moved in each direction (`a_to_b`, `b_to_a`); `timed_out` if the idle timeout
    ended the splice."""

    __slots__ = ("a_to_b", "b_to_a", "last", "running", "timed_out")

    def __init__(self) -> None:
        self.a_to_b = 0
        self.b_to_a = 0
        self.last = 0.0  # trio time of the last byte moved
        self.running = 0  # pumps still moving bytes
        self.timed_out = False


async def _pump(
    src: Stream,
    dst: Stream,
    first: bytes,
    counter: Counter,
    forward: bool,
    cancel: trio.CancelScope,
) -> None:
    n = 0
    clock = trio.current_time
    try:
        if first:
            await dst.send_all(first)
            counter.last = clock()
            if forward:
                counter.a_to_b += len(first)
            else:
                counter.b_to_a += len(first)
        while True:
            data = await src.recv(RECV_SIZE)
            counter.last = clock()
            if not data:
                dst.shutdown_write()
                return
            await dst.send_all(data)
            counter.last = clock()
            if forward:
                counter.a_to_b += len(data)
            else:
                counter.b_to_a += len(data)
            n += 1
            if n % _CHECKPOINT_EVERY == 0:
                await trio.lowlevel.checkpoint()
    except StreamClosed:
        # A reset or a broken TLS record: the other direction cannot go on meaningfully.
        cancel.cancel()
    finally:
        counter.running -= 1
        if counter.running == 0:
            cancel.cancel()  # both directions are done: stop the watchdog too


async def _watchdog(counter: Counter, idle_timeout: float, cancel: trio.CancelScope) -> None:
    while True:
        now = trio.current_time()
        deadline = counter.last + idle_timeout
        if now >= deadline:
            counter.timed_out = True
            cancel.cancel()
            return
        await trio.sleep(deadline - now)


async def splice(
    a: Stream,
    b: Stream,
    *,
    a_first: bytes = b"",
    b_first: bytes = b"",
    counter: Counter | None = None,
    idle_timeout: float = math.inf,
) -> Counter:
    """Forward until both directions end; `a_first`/`b_first` are bytes already read from a/b.

    Ends early (`counter.timed_out`) after `idle_timeout` seconds without a byte moving.
    Never raises for stream errors; the caller closes both streams afterwards.
    """
    counter = counter or Counter()
    counter.last = trio.current_time()
    counter.running = 2
    async with trio.open_nursery() as nursery:
        scope = nursery.cancel_scope
        nursery.start_soon(_pump, a, b, a_first, counter, True, scope)
        nursery.start_soon(_pump, b, a, b_first, counter, False, scope)
        if idle_timeout < math.inf:
            nursery.start_soon(_watchdog, counter, idle_timeout, scope)
    return counter
