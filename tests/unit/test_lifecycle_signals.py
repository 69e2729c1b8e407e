"""`registry.lifecycle.serve_until_signalled`, with real signals sent to this process (the
receiver is installed before `start` runs, so each signal below lands in it)."""

from __future__ import annotations

import os
import signal

import trio

from registry.lifecycle import serve_until_signalled


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)


async def test_sighup_reloads_once_serving_and_sigterm_drains_then_cancels() -> None:
    events: list[str] = []

    async def worker() -> None:
        try:
            await trio.sleep_forever()
        finally:
            events.append("worker cancelled")

    async def start(nursery: trio.Nursery) -> None:
        nursery.start_soon(worker)
        _send(signal.SIGHUP)  # still starting: not a reload yet
        await trio.sleep(0.05)
        nursery.start_soon(signal_later)

    async def signal_later() -> None:
        await trio.sleep(0.05)
        _send(signal.SIGHUP)
        await trio.sleep(0.05)
        _send(signal.SIGTERM)

    async def drain() -> None:
        events.append("drained")

    with trio.fail_after(5):
        got = await serve_until_signalled(
            start, drain=drain, reload=lambda: events.append("reloaded"), grace=1
        )
    assert got == signal.SIGTERM
    assert events == ["reloaded", "drained", "worker cancelled"]


async def test_a_drain_that_overruns_the_grace_period_is_cut_short() -> None:
    async def start(nursery: trio.Nursery) -> None:
        _send(signal.SIGINT)

    async def drain() -> None:
        await trio.sleep_forever()

    with trio.fail_after(5):
        began = trio.current_time()
        got = await serve_until_signalled(start, drain=drain, grace=0.2)
    assert got == signal.SIGINT
    assert 0.2 <= trio.current_time() - began < 3


async def test_sigterm_during_a_slow_start_stops_without_draining() -> None:
    drained = []

    async def start(nursery: trio.Nursery) -> None:
        _send(signal.SIGTERM)
        await trio.sleep_forever()  # e.g. waiting for a CA that never answers

    async def drain() -> None:
        drained.append(True)

    with trio.fail_after(5):
        got = await serve_until_signalled(start, drain=drain, grace=1)
    assert got == signal.SIGTERM and drained == []


async def test_a_failing_start_raises_instead_of_waiting_for_a_signal() -> None:
    async def start(nursery: trio.Nursery) -> None:
        raise OSError("address in use")

    async def drain() -> None:
        raise AssertionError("never serving, never drained")

    with trio.fail_after(5):
        try:
            await serve_until_signalled(start, drain=drain, grace=1)
        except BaseExceptionGroup as group:
            assert group.subgroup(OSError) is not None
        except OSError:
            pass
        else:
            raise AssertionError("start's error was swallowed")
