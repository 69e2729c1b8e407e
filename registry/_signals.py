"""How a Weft daemon lives under systemd: serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

One helper for the registry server, the agent and the Kubernetes adapter, so they all behave
the same way: signals are caught from the first moment (a SIGTERM during a slow start stops
the daemon cleanly instead of killing it mid-write), SIGHUP reloads only once the daemon
serves, and a stop gets `grace` seconds to drain before everything is cancelled.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("weft.lifecycle")


async def serve_until_signalled(
    start: Callable[[trio.Nursery], Awaitable[object]],
    *,
    drain: Callable[[], Awaitable[object]],
    grace: float,
    reload: Callable[[], object] | None = None,
) -> int:
    """Run a daemon until SIGTERM or SIGINT; returns the signal that stopped it.

    start(nursery): starts the daemon's tasks in `nursery` and returns once it serves.
    reload(): called for each SIGHUP once serving (before that, SIGHUP is logged and ignored).
    drain(): on SIGTERM/SIGINT once serving, given `grace` seconds; then every task in the
    nursery is cancelled. A stop before the daemon serves cancels the start at once.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            serving = trio.Event()

            async def started() -> None:
                await start(nursery)
                serving.set()

            nursery.start_soon(started)
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    if not serving.is_set():
                        log.info("SIGHUP before the daemon serves: nothing to reload yet")
                    elif reload is None:
                        log.info("SIGHUP: nothing to reload")
                    else:
                        reload()
                    continue
                if serving.is_set():
                    log.info("stopping: draining", extra={"kv": {"signal": name, "grace": grace}})
                    with trio.move_on_after(grace) as scope:
                        await drain()
                    if scope.cancelled_caught:
                        log.warning("drain did not finish within %.1fs; stopping anyway", grace)
                else:
                    log.info("stopping before serving", extra={"kv": {"signal": name}})
                nursery.cancel_scope.cancel()
                return int(signum)
    raise AssertionError("the signal receiver never ends")  # pragma: no cover
