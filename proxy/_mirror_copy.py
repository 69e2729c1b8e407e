"""Sending a mirrored copy of a request: in the background, bounded, and never felt by the
caller. The decision (share, limits) is `_mirror`'s; this is the I/O.

The copy is the exact bytes sent to the real backend. It is sent once the original has been
written, on its own connection lease from the mirror's cluster, and its answer's head is read
(so the mirror really served it) and the connection closed; every outcome is counted in
`weft_proxy_mirrored_requests_total{upstream,result}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from ._errors import ProxyError
from ._h1 import Limits, find_head, parse_response_head
from ._mirror import COPY_TIMEOUT

if TYPE_CHECKING:
    from ._cluster import Cluster
    from ._metrics import Metrics

_LIMITS = Limits(max_head_bytes=64 * 1024, max_headers=200)


class _Count:
    in_flight = 0


def in_flight() -> int:
    return _Count.in_flight


class Outcome:
    """What became of one copy: the `result` label of the mirrored-requests metric."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result = "error"


@contextmanager
def copies() -> Iterator[Outcome]:
    """One copy in flight (`in_flight`, which `should_mirror` bounds) while the block runs."""
    _Count.in_flight += 1
    try:
        yield Outcome()
    finally:
        _Count.in_flight -= 1


async def send_copy(cluster: Cluster, parts: list[bytes], method: bytes, metrics: Metrics) -> None:
    with copies() as outcome:
        try:
            with trio.move_on_after(COPY_TIMEOUT) as scope:
                lease = await cluster.acquire([])
                try:
                    for part in parts:
                        await lease.conn.send_all(part)
                    buf = b""
                    while (n := find_head(buf, _LIMITS)) <= 0:
                        data = await lease.conn.recv_later()
                        if not data:
                            raise ProxyError("the mirror closed the connection before answering")
                        buf += data
                    status = parse_response_head(buf[:n], method, _LIMITS).status
                    outcome.result = f"{status // 100}xx"
                    lease.done(ok=status < 500, reusable=False)
                except BaseException:
                    lease.done(ok=False, reusable=False)
                    raise
            if scope.cancelled_caught:
                outcome.result = "timeout"
        except ProxyError:
            outcome.result = "error"
        finally:
            metrics.add(metrics.mirrors, (cluster.name, outcome.result))
