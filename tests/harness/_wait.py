"""Waits that poll a condition against a deadline (never a bare sleep as synchronisation).

A condition returns something falsy for "not yet", and may raise while the thing it watches
starts up; an AssertionError from the condition means "this will never happen" and ends the
wait at once (a daemon that exited, say).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call `condition` until it returns something truthy; return that, or fail at `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except AssertionError:
            raise
        except Exception as exc:  # the condition may fail while the thing starts up
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}{detail}"
            )
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    deadline = trio.current_time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await condition()
            if result:
                return result
        except AssertionError:
            raise
        except Exception as exc:
            last_error = exc
        if trio.current_time() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}{detail}"
            )
        await trio.sleep(interval)
