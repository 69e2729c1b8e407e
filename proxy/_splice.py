"""Opaque forwarding: bytes both ways between two streams until both directions end.

Used for TCP upstreams, for the inbound side of opaque connections, after `101 Switching
Protocols` (WebSocket) and for CONNECT tunnels. When one side ends its stream the other side
is half-closed (TCP FIN or TLS close_notify), so request/response protocols that rely on
half-close still see it; a reset on either side ends both directions.
"""

from __future__ import annotations

import trio

from ._errors import StreamClosed
from ._stream import RECV_SIZE, Stream

_CHECKPOINT_EVERY = 16


class Counter:
    """Bytes moved in each direction (`a_to_b`, `b_to_a`)."""

    __slots__ = ("a_to_b", "b_to_a")

    def __init__(self) -> None:
        self.a_to_b = 0
        self.b_to_a = 0


async def _pump(
    src: Stream, dst: Stream, counter: Counter, forward: bool, cancel: trio.CancelScope
) -> None:
    n = 0
    try:
        while True:
            data = await src.recv(RECV_SIZE)
            if not data:
                dst.shutdown_write()
                return
            await dst.send_all(data)
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


async def splice(
    a: Stream,
    b: Stream,
    *,
    a_first: bytes = b"",
    b_first: bytes = b"",
    counter: Counter | None = None,
) -> Counter:
    """Forward until both directions end; `a_first`/`b_first` are bytes already read from a/b.

    Never raises for stream errors; the caller closes both streams afterwards.
    """
    counter = counter or Counter()
    try:
        if a_first:
            await b.send_all(a_first)
            counter.a_to_b += len(a_first)
        if b_first:
            await a.send_all(b_first)
            counter.b_to_a += len(b_first)
    except StreamClosed:
        return counter
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, a, b, counter, True, nursery.cancel_scope)
        nursery.start_soon(_pump, b, a, counter, False, nursery.cancel_scope)
    return counter
