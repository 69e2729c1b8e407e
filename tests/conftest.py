"""Fixtures every test shares: one real etcd per session, a fresh key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from registry.etcd import EtcdClient

from .harness import Adapters, EtcdCluster, FakeKube, WeftServer

# Property tests are reproducible by default (the same examples every run, no deadline on a
# busy 2-core machine); HYPOTHESIS_PROFILE=explore draws new ones to look for fresh bugs.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests share one etcd without seeing each other."""
    return f"/weft-test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
async def etcd_client(etcd: EtcdCluster) -> AsyncIterator[EtcdClient]:
    client = EtcdClient(etcd.endpoints)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def start_server(etcd: EtcdCluster, prefix: str, tmp_path: Path):
    """Factory: start `weft server` processes on this test's prefix; all stopped at the end."""
    from .harness import WeftServer

    started: list[WeftServer] = []

    def start(*args: str, bootstrap: bool = True, prefix_: str | None = None) -> WeftServer:
        server = WeftServer(
            etcd.endpoints, prefix_ or prefix, tmp_path, args=args, bootstrap=bootstrap
        )
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def server(start_server):
    """One `weft server` with a bootstrap operator token (`server.token`)."""
    return start_server()


# ------------------------------------------------------------------------------------------------
# Kubernetes adapter tests: a fake API server (modules override `fake` for other bookmark timing)
# and adapter processes against it, all stopped when the test ends.


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as kube:
        yield kube


@pytest.fixture
def adapters(fake: FakeKube, server: WeftServer, tmp_path: Path) -> Iterator[Adapters]:
    group = Adapters(fake, server.url, server.token or "", tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


# ------------------------------------------------------------------------------------------------
# Systemd test hosts (tests/harness/hosts/, docs/testing.md): real systemd as PID 1 over a cached
# debootstrapped Debian root, sshd on a loopback port each. Used by `slow` tests only.


@pytest.fixture(scope="session")
def testhost_root() -> Path:
    """The cached Debian root the hosts boot from (built on first use, about a minute)."""
    import os

    from .harness.hosts import ensure_root

    if os.geteuid() != 0:
        pytest.fail("systemd test hosts need root (namespaces, mounts, cgroups): run as root")
    return ensure_root()


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory):
    """The session's SSH client key pair: every host authorizes it for root."""
    from .harness.hosts import SshKeyPair

    return SshKeyPair.generate(tmp_path_factory.mktemp("ssh"))


@pytest.fixture
def start_host(testhost_root: Path, ssh_keypair, tmp_path: Path):
    """Factory: `start_host("name", wait=True, ssh=True)` boots a SystemdHost; all are stopped
    (processes killed, cgroups and directories removed) when the test ends, pass or fail.
    Each host's console and journal are kept in `tmp_path / "hosts"`."""
    from .harness.hosts import SystemdHost

    started: list[SystemdHost] = []

    def start(name: str | None = None, *, wait: bool = True, ssh: bool = True, **kwargs):
        host = SystemdHost(
            name or f"host{len(started) + 1}",
            ssh_key=ssh_keypair if ssh else None,
            root=testhost_root,
            logs_dir=tmp_path / "hosts",
            **kwargs,
        )
        started.append(host)
        return host.start(wait=wait)

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for host in started:
            try:
                host.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
