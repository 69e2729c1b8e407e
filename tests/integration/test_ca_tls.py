"""Mutual TLS 1.3 between two trio endpoints on real sockets, using leaves the CA issued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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

pytestmark = pytest.mark.timeout(30)
TD = "weft.local"
WEB = SpiffeId(TD, "default", "web")
DB = SpiffeId(TD, "default", "db")


async def new_ca(trust_domain: str = TD) -> tuple[CertificateAuthority, FakeClock]:
    clock = FakeClock(datetime.now(UTC))
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate(), clock=clock)
    await ca.initialise(trust_domain)
    return ca, clock


async def workload(
    ca: CertificateAuthority,
    identity: SpiffeId,
    *,
    bundle: str | None = None,
    trust_domain: str = TD,
) -> Workload:
    made = make_key_and_csr(identity)
    issued = await ca.sign(made.csr_pem, identity, Operator())
    return Workload(issued.full_chain_pem, made.key_pem, bundle or ca.bundle().pem(), trust_domain)


async def test_two_workloads_with_issued_leaves_see_each_others_spiffe_ids(tmp_path: Path) -> None:
    ca, _ = await new_ca()
    web, db = await workload(ca, WEB), await workload(ca, DB)
    result = await mtls_exchange(web, db, tmp_path, client_expects=DB, server_expects=WEB)
    assert result.ok, result
    assert result.client.peer == DB and result.server.peer == WEB


async def test_a_peer_from_another_trust_domain_is_refused_for_its_trust_domain(
    tmp_path: Path,
) -> None:
    ca, _ = await new_ca()
    other_ca, _ = await new_ca("other.example")
    federated = ca.bundle().pem() + other_ca.bundle().pem()  # TLS trusts both roots...
    stranger_id = SpiffeId("other.example", "default", "web")
    stranger = await workload(other_ca, stranger_id, bundle=federated, trust_domain="other.example")
    db = await workload(ca, DB, bundle=federated)
    result = await mtls_exchange(stranger, db, tmp_path)
    # ... so the handshake completes, and the SPIFFE check refuses the other domain.
    assert result.server.error is not None and result.server.error.rule is PeerRule.TRUST_DOMAIN
    assert (
        "from trust domain 'other.example'; expected a workload of trust domain 'weft.local'"
        in str(result.server.error)
    )
    assert result.client.error is not None and result.client.error.rule is PeerRule.TRUST_DOMAIN


async def test_an_expired_leaf_is_refused_as_expired(tmp_path: Path) -> None:
    ca, clock = await new_ca()
    now = clock.now
    clock.now = now - timedelta(hours=30)  # the CA issued this one yesterday, for a day
    old = await workload(ca, WEB)
    clock.now = now
    db = await workload(ca, DB)
    result = await mtls_exchange(old, db, tmp_path)
    assert result.server.error is not None and result.server.error.rule is PeerRule.EXPIRED
    assert "the peer certificate has expired" in str(result.server.error)
    assert result.client.error is not None
    assert result.client.error.rule is PeerRule.REJECTED_BY_PEER
    # and the other way round: an expired server is refused by the client
    reverse = await mtls_exchange(db, old, tmp_path / "reverse")
    assert reverse.client.error is not None and reverse.client.error.rule is PeerRule.EXPIRED


async def test_a_leaf_signed_by_a_foreign_ca_is_refused_as_untrusted(tmp_path: Path) -> None:
    ca, _ = await new_ca()
    foreign_ca, _ = await new_ca()  # same trust domain name, different CA: an impostor
    impostor = await workload(foreign_ca, WEB, bundle=ca.bundle().pem())
    db = await workload(ca, DB)
    result = await mtls_exchange(impostor, db, tmp_path)
    assert result.server.error is not None and result.server.error.rule is PeerRule.UNTRUSTED_CA
    assert "signed by a CA not in the trust bundle" in str(result.server.error)
    assert result.client.error is not None
    assert result.client.error.rule is PeerRule.REJECTED_BY_PEER
    reverse = await mtls_exchange(db, impostor, tmp_path / "reverse")
    assert reverse.client.error is not None
    assert reverse.client.error.rule is PeerRule.UNTRUSTED_CA


async def test_a_peer_that_is_not_the_expected_service_is_refused(tmp_path: Path) -> None:
    ca, _ = await new_ca()
    web, db = await workload(ca, WEB), await workload(ca, DB)
    admin = SpiffeId(TD, "default", "admin")
    result = await mtls_exchange(web, db, tmp_path, client_expects=admin)
    assert result.client.error is not None and result.client.error.rule is PeerRule.IDENTITY
    assert "the peer is spiffe://weft.local/ns/default/svc/db; expected " + admin.uri in str(
        result.client.error
    )
