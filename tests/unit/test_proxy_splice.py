"""Splices end after their idle timeout, and only then (socket pairs, trio's virtual clock)."""

from __future__ import annotations

import socket

import trio
import trio.testing

from proxy._splice import splice
from proxy._stream import Stream


def _pair() -> tuple[socket.socket, Stream]:
    """(the far end a test drives, the near end the splice uses)."""
    far, near = socket.socketpair()
    far.setblocking(False)
    near.setblocking(False)
    return far, Stream(near)


def test_a_silent_splice_ends_after_its_idle_timeout() -> None:
    async def main() -> None:
        a_far, a = _pair()
        b_far, b = _pair()
        started = trio.current_time()
        counter = await splice(a, b, a_first=b"hello", idle_timeout=3600)
        assert counter.timed_out
        assert 3600 <= trio.current_time() - started < 3601
        assert b_far.recv(100) == b"hello"  # what was already read went on
        for s in (a_far, b_far):
            s.close()
        a.close()
        b.close()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_traffic_keeps_a_splice_open_past_the_idle_timeout() -> None:
    async def main() -> None:
        a_far, a = _pair()
        b_far, b = _pair()
        result = []

        async def run() -> None:
            result.append(await splice(a, b, idle_timeout=10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            for i in range(5):  # 40 s of traffic, one message every 8 s
                await trio.sleep(8)
                a_far.send(b"%d" % i)
                await trio.sleep(0.01)
                assert b_far.recv(100) == b"%d" % i
            started = trio.current_time()
        (counter,) = result
        assert counter.timed_out and counter.a_to_b == 5
        assert 9.9 < trio.current_time() - started < 10.1  # cut 10 s after the last byte
        for s in (a_far, b_far):
            s.close()
        a.close()
        b.close()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_splice_whose_both_directions_ended_does_not_wait_for_the_timeout() -> None:
    async def main() -> None:
        a_far, a = _pair()
        b_far, b = _pair()
        a_far.shutdown(socket.SHUT_WR)
        b_far.shutdown(socket.SHUT_WR)
        started = trio.current_time()
        counter = await splice(a, b, idle_timeout=3600)
        assert not counter.timed_out and trio.current_time() - started < 1
        for s in (a_far, b_far):
            s.close()
        a.close()
        b.close()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
