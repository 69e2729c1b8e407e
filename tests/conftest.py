"""Fixtures every test shares: one real etcd per session, a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from registry.etcd import EtcdClient

from .harness import EtcdCluster


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
