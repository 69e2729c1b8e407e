"""A server restarting in a rollout must not hold its drain for the agents' blocking queries:
they wait for minutes, so it hangs up on them at once (they ask again) and stops promptly."""

from __future__ import annotations

import signal
import threading
import time

import httpx


def test_sigterm_hangs_up_on_blocking_queries_instead_of_waiting_out_the_grace(
    start_server,
) -> None:
    server = start_server("--grace", "10s")
    headers = server.headers()
    first = httpx.get(f"{server.url}/v1/registry/services/web", headers=headers)
    index = first.headers["X-Weft-Index"]
    outcome: dict[str, object] = {}

    def watch() -> None:
        started = time.monotonic()
        try:
            httpx.get(
                f"{server.url}/v1/registry/services/web",
                params={"index": index, "wait": "60s"},
                headers=headers,
                timeout=90,
            )
            outcome["result"] = "answered"
        except httpx.HTTPError as exc:
            outcome["result"] = type(exc).__name__
        outcome["seconds"] = time.monotonic() - started

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)  # let the query park (there is nothing to observe from outside)
    assert watcher.is_alive(), outcome
    stopped = time.monotonic()
    server.proc.signal(signal.SIGTERM)
    server.proc.popen.wait(timeout=30)
    took = time.monotonic() - stopped
    watcher.join(timeout=30)
    assert took < 5, f"the server took {took:.1f}s to stop with a blocking query open"
    assert server.proc.popen.returncode == 0, server.log()[-2000:]
    assert outcome["result"] != "answered" or outcome["seconds"] < 5, outcome
