"""Root rotation over real TLS: old-root and new-root workloads interoperate during the overlap,
and once the old root's leaves have expired it leaves the bundle without breaking anyone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ca import (
    CertificateAuthority,
    KeyEncryptionKey,
    MemoryCAStore,
    Operator,
    PeerRule,
    SpiffeId,
    make_key_and_csr,
)
from tests.harness import FakeClock, Workload, mtls_exchange

pytestmark = pytest.mark.timeout(60)
TD = "weft.local"
WEB = SpiffeId(TD, "default", "web")
DB = SpiffeId(TD, "default", "db")


async def leaf(ca: CertificateAuthority, identity: SpiffeId, bundle: str) -> Workload:
    made = make_key_and_csr(identity)
    issued = await ca.sign(made.csr_pem, identity, Operator())
    return Workload(issued.full_chain_pem, made.key_pem, bundle, TD)


async def test_old_and_new_root_workloads_interoperate_through_a_rotation(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate(), clock=clock)
    await ca.initialise(TD)
    stale_bundle = ca.bundle().pem()  # what a workload holds until it hears of the rotation
    old_root_id = ca.bundle().active.id

    old = {
        "old leaf, stale bundle": await leaf(ca, WEB, stale_bundle),
        "old leaf, stale bundle (db)": await leaf(ca, DB, stale_bundle),
    }
    rotated = await ca.rotate()
    overlap_bundle = ca.bundle().pem()
    assert [r.id for r in ca.bundle().roots] == [rotated.bundle.active.id, old_root_id]
    # An old-root workload whose agent has already fetched the new bundle.
    stale_web = old["old leaf, stale bundle"]
    refreshed = {
        "old leaf, overlap bundle": Workload(
            stale_web.chain_pem, stale_web.key_pem, overlap_bundle, TD
        )
    }
    new = {
        "new leaf, overlap bundle": await leaf(ca, DB, overlap_bundle),
        "new leaf, overlap bundle (web)": await leaf(ca, WEB, overlap_bundle),
    }
    everyone = {**old, **refreshed, **new}
    n = 0
    for client_name, client in everyone.items():
        for server_name, server in everyone.items():
            if client is server:
                continue
            n += 1
            result = await mtls_exchange(client, server, tmp_path / f"overlap-{n}")
            assert result.ok, (client_name, "->", server_name, result)
    assert n == 20

    # The overlap ends when every leaf under the old root has expired.
    drop = rotated.previous_root_drop_after
    assert drop is not None
    clock.now = drop
    assert await ca.tick()
    after_bundle = ca.bundle().pem()
    assert [r.id for r in ca.bundle().roots] == [rotated.bundle.active.id]
    assert old_root_id not in after_bundle and ca.bundle().roots[0].certificate_pem in after_bundle

    # Leaves issued during the overlap (presenting the cross-signed root) keep working with
    # peers that trust only the new root, and so do leaves issued after it. (The fake clock
    # goes back to the wall clock so that the new leaf is valid for OpenSSL right now.)
    clock.now = datetime.now(UTC)
    during = Workload(
        new["new leaf, overlap bundle"].chain_pem,
        new["new leaf, overlap bundle"].key_pem,
        after_bundle,
        TD,
    )
    after = await leaf(ca, WEB, after_bundle)
    assert after.chain_pem.count("BEGIN CERTIFICATE") == 2  # leaf + intermediate, no cross-sign
    assert (await mtls_exchange(after, during, tmp_path / "after-1")).ok
    assert (await mtls_exchange(during, after, tmp_path / "after-2")).ok

    # An old-root leaf (were one still valid) is no longer trusted by new-bundle peers.
    lingering = Workload(stale_web.chain_pem, stale_web.key_pem, after_bundle, TD)
    result = await mtls_exchange(lingering, after, tmp_path / "after-3")
    assert result.server.error is not None
    assert result.server.error.rule is PeerRule.UNTRUSTED_CA
