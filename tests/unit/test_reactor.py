"""The proxy's own readability waits (`proxy/_reactor.py`) keep trio's contract.

Real socket pairs; a stream waits through the reactor once `run_reactor` runs in the trio run.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import trio

from proxy._errors import StreamClosed
from proxy._stream import REACTOR, Stream, run_reactor


@pytest.fixture
async def reactor() -> AsyncIterator[object]:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_reactor)
        yield REACTOR.get()
        nursery.cancel_scope.cancel()


def pair() -> tuple[Stream, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return Stream(a), b


async def test_a_wait_ends_when_bytes_arrive(reactor: object) -> None:
    stream, peer = pair()
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await stream.recv_later())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # nothing sent yet: the reader is parked
        peer.send(b"hello")
    assert got == [b"hello"]
    stream.close()
    peer.close()


async def test_bytes_that_came_before_the_wait_are_not_missed(reactor: object) -> None:
    """Edge-triggered: the edge of bytes arriving while nobody waits must not be lost."""
    stream, peer = pair()
    with trio.move_on_after(0.05):  # registers the socket with the reactor, then gives up
        await stream.recv_later()
    peer.send(b"early")
    await trio.testing.wait_all_tasks_blocked()  # the reactor sees the edge, with no waiter
    with trio.fail_after(2):
        assert await stream.recv_later() == b"early"
    stream.close()
    peer.close()


async def test_a_cancelled_wait_leaves_no_waiter_behind(reactor: object) -> None:
    stream, peer = pair()
    with trio.move_on_after(0.05) as scope:
        await stream.recv_later()
    assert scope.cancelled_caught
    peer.send(b"after")
    with trio.fail_after(2):
        assert await stream.recv_later() == b"after"  # not BusyResourceError
    stream.close()
    peer.close()


async def test_closing_a_stream_wakes_its_reader_with_an_error(reactor: object) -> None:
    stream, peer = pair()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await stream.recv_later()
        except StreamClosed as exc:
            errors.append(exc)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            stream.close()
    assert len(errors) == 1
    peer.close()


async def test_a_reused_descriptor_is_registered_again(reactor: object) -> None:
    first, peer = pair()
    peer.send(b"one")
    assert await first.recv_later() == b"one"
    fd = first.sock.fileno()
    first.sock.close()  # closed behind the stream's back: the reactor was not told
    peer.close()
    for _ in range(20):  # the kernel hands out the lowest free descriptor: expect it back
        second, peer2 = pair()
        if second.sock.fileno() == fd:
            break
        second.close()
        peer2.close()
    else:
        pytest.fail(f"descriptor {fd} was not reused")
    peer2.send(b"two")
    with trio.fail_after(2):
        assert await second.recv_later() == b"two"
    second.close()
    peer2.close()


async def test_two_readers_of_one_socket_are_refused(reactor: object) -> None:
    stream, peer = pair()
    failures: list[BaseException] = []

    async def reader() -> None:
        try:
            await stream.recv_later()
        except trio.BusyResourceError as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert len(failures) == 1
        peer.send(b"x")
    stream.close()
    peer.close()


async def test_without_a_reactor_streams_wait_through_trio() -> None:
    assert REACTOR.get() is None
    stream, peer = pair()
    peer.send(b"plain")
    with trio.fail_after(2):
        assert await stream.recv_later() == b"plain"
    stream.close()
    peer.close()


async def test_a_stopped_reactor_hands_waits_back_to_trio() -> None:
    stream, peer = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_reactor)
        assert REACTOR.get() is not None
        nursery.cancel_scope.cancel()
    assert REACTOR.get() is None
    peer.send(b"later")
    with trio.fail_after(2):
        assert await stream.recv_later() == b"later"
    stream.close()
    peer.close()


async def test_bytes_left_unread_by_the_last_read_end_the_next_wait(reactor: object) -> None:
    """A read that takes only part of what arrived (one TLS record of two) must not leave the
    rest waiting for bytes that will never come."""
    stream, peer = pair()
    peer.send(b"first-record|second-record")
    assert await stream.recv_later(13) == b"first-record|"
    with trio.fail_after(2):
        assert await stream.recv_later() == b"second-record"
    stream.close()
    peer.close()


async def test_a_readable_socket_nobody_waits_on_does_not_spin_the_reactor(reactor: object) -> None:
    stream, peer = pair()
    with trio.move_on_after(0.01):  # registered, then nobody waits
        await stream.recv_later()
    before = reactor.rounds  # type: ignore[attr-defined]
    peer.send(b"unwanted")
    await trio.sleep(0.3)
    assert reactor.rounds - before <= 3  # type: ignore[attr-defined]
    peer.close()  # a hang-up with nobody waiting: no spinning either
    await trio.sleep(0.3)
    assert reactor.rounds - before <= 6  # type: ignore[attr-defined]
    with trio.fail_after(2):
        assert await stream.recv_later() == b"unwanted"  # and a later wait still gets it
    stream.close()
