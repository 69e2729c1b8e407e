"""Two replicas: only the Lease holder writes; killing it hands over within the Lease duration,
and the registry never blinks empty on the way."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import Adapters, FakeKube, K8sAdapter, WeftServer, wait_until

pytestmark = pytest.mark.timeout(120)

LEASE_DURATION = 3.0  # the FAST timings of the harness
RETRY_PERIOD = 0.4


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.5) as server:
        yield server


def passing(server: WeftServer, service: str) -> list[str]:
    resp = httpx.get(
        f"{server.url}/v1/health/service/{service}",
        headers=server.headers(),
        params={"passing": ""},
        timeout=10,
    )
    resp.raise_for_status()
    return sorted(e["Service"]["Address"] for e in resp.json())


def pod_ips(fake: FakeKube) -> list[str]:
    return sorted(fake.get("pods", "shop", p)["status"]["podIP"] for p in fake.pods("shop", "web"))


class Watcher:
    """Polls the registry in the background and remembers the smallest count it saw."""

    def __init__(self, server: WeftServer, service: str) -> None:
        self.server, self.service = server, service
        self.smallest: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                count = len(passing(self.server, self.service))
            except httpx.HTTPError:
                continue
            self.samples += 1
            self.smallest = count if self.smallest is None else min(self.smallest, count)
            self._stop.wait(0.02)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def leader_of(*replicas: K8sAdapter) -> K8sAdapter:
    def one() -> K8sAdapter | None:
        leaders = [r for r in replicas if r.leader()]
        return leaders[0] if len(leaders) == 1 else None

    return wait_until(one, timeout=20, what="exactly one leader")


def test_only_the_leader_writes_and_a_killed_leader_hands_over(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.add_service("shop", "web", replicas=6)
    a = adapters.start(identity="replica-a")
    b = adapters.start(identity="replica-b")
    first = leader_of(a, b)
    standby = b if first is a else a
    wait_until(
        lambda: passing(server, "web-shop") == pod_ips(fake), timeout=20, what="the first sync"
    )
    standby.wait_ready()

    # Only the leader writes: to the registry, and to the Lease.
    fake.scale("shop", "web", 8)
    wait_until(lambda: passing(server, "web-shop") == pod_ips(fake), timeout=10, what="scale")
    assert first.status()["registry_sync"]["batches"] >= 2
    standby_status = standby.status()
    assert standby_status["leader"] is False and standby_status["ready"] is True
    assert standby_status["registry_sync"]["batches"] == 0
    assert standby_status["holder"] == first.identity
    assert fake.writes(user_agent=f"({standby.identity})") == []
    assert fake.writes(resource="leases", user_agent=f"({first.identity})")

    # Kill the leader mid-flight; the cluster changes during the handover.
    with Watcher(server, "web-shop") as watcher:
        first.kill()
        killed = time.monotonic()
        fake.scale("shop", "web", 7)
        wait_until(
            standby.leader,
            timeout=LEASE_DURATION + 5,
            interval=0.05,
            what="the standby to take over",
        )
        handover = time.monotonic() - killed
        wait_until(
            lambda: passing(server, "web-shop") == pod_ips(fake),
            timeout=10,
            what="the new leader to catch up",
        )
    # Within the Lease duration (plus the standby's polling period and a slow machine).
    assert handover <= LEASE_DURATION + 2 * RETRY_PERIOD + 1.0, handover
    assert watcher.samples > 10 and watcher.smallest is not None and watcher.smallest >= 7
    status = standby.status()["registry_sync"]
    # The warm standby wrote only the difference: one pod less, in one batch.
    assert status["batches"] == 1 and status["deletes"] == 1 and status["upserts"] == 0

    # A graceful stop releases the Lease: a third replica takes over at its next try.
    c = adapters.start(identity="replica-c")
    c.wait_ready()
    standby.signal(signal.SIGTERM)
    stopped = time.monotonic()
    wait_until(c.leader, timeout=LEASE_DURATION + 5, interval=0.05, what="replica-c to lead")
    assert time.monotonic() - stopped < LEASE_DURATION
    fake.scale("shop", "web", 3)
    wait_until(
        lambda: passing(server, "web-shop") == pod_ips(fake), timeout=10, what="replica-c to write"
    )
