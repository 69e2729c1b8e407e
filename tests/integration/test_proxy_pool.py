"""Per-endpoint connection pools over real sockets: reuse, limits, idle timeout, dead peers."""

from __future__ import annotations

import socket

import trio
import trio.testing

from proxy._pool import Pool
from proxy._stream import Stream


def pair() -> tuple[Stream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return Stream(ours), theirs


async def test_an_idle_connection_is_reused_most_recent_first() -> None:
    pool = Pool(max_connections=4, idle_timeout=60)
    (a, a_peer), (b, b_peer) = pair(), pair()
    for _ in range(2):
        assert await pool.checkout(trio.current_time()) is None  # a slot for a new one
    pool.release(a, reusable=True, now=trio.current_time())
    pool.release(b, reusable=True, now=trio.current_time())
    assert pool.take_idle(trio.current_time()) is b
    assert pool.take_idle(trio.current_time()) is a
    for s in (a_peer, b_peer):
        s.close()


async def test_a_connection_the_peer_closed_is_dropped_not_reused() -> None:
    pool = Pool(max_connections=4, idle_timeout=60)
    conn, peer = pair()
    assert await pool.checkout(trio.current_time()) is None
    pool.release(conn, reusable=True, now=trio.current_time())
    peer.close()
    assert pool.take_idle(trio.current_time()) is None
    assert conn.closed and pool.active == 0


async def test_idle_connections_expire() -> None:
    pool = Pool(max_connections=4, idle_timeout=5)
    conn, peer = pair()
    assert await pool.checkout(0.0) is None
    pool.release(conn, reusable=True, now=0.0)
    assert pool.reap(4.0) == 0 and pool.idle
    assert pool.reap(6.0) == 1 and not pool.idle and conn.closed
    peer.close()


async def test_the_limit_makes_callers_wait_for_a_connection() -> None:
    pool = Pool(max_connections=1, idle_timeout=60)
    conn, peer = pair()
    assert await pool.checkout(trio.current_time()) is None
    got: list[Stream | None] = []

    async def second() -> None:
        got.append(await pool.checkout(trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # at the limit: waiting
        pool.release(conn, reusable=True, now=trio.current_time())
    assert got == [conn]  # handed the released connection
    peer.close()


async def test_a_closed_pool_lends_nothing_and_closes_what_comes_back() -> None:
    pool = Pool(max_connections=2, idle_timeout=60)
    idle, idle_peer = pair()
    busy, busy_peer = pair()
    assert await pool.checkout(0.0) is None
    assert await pool.checkout(0.0) is None
    pool.release(idle, reusable=True, now=0.0)
    pool.close()
    assert idle.closed
    pool.release(busy, reusable=True, now=0.0)
    assert busy.closed and not pool.idle
    idle_peer.close()
    busy_peer.close()
