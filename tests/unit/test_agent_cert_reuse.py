"""`agent._certs.CertManager` at start and when the trust bundle changes: which certificate
on disk it adopts, and when it asks for a new one at once (no server needed for this part)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent._cert_bundle import Pair
from agent._certs import CertManager
from ca import SpiffeId
from tests.harness import TestCA


def _manager(tmp_path: Path, pki: TestCA, key_pem: bytes, chain_pem: bytes) -> CertManager:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "web.pem").write_bytes(Pair(key_pem, chain_pem).combined())
    (certs / "bundle.pem").write_bytes(pki.bundle_pem)
    manager = CertManager(None, certs)  # type: ignore[arg-type]  # never asked to sign here
    manager.set_identities({"web": SpiffeId.parse(pki.spiffe("web"))})
    return manager


def test_a_good_certificate_on_disk_is_adopted_without_asking_the_ca(tmp_path: Path) -> None:
    pki = TestCA()
    leaf = pki.issue("web")
    manager = _manager(tmp_path, pki, leaf.key_pem, leaf.chain_pem)
    assert manager.ready("web")
    assert manager.held["web"].serial == format(leaf.cert.serial_number, "x")
    assert not manager.held["web"].lifecycle.should_renew(dt.datetime.now(dt.UTC))


def test_a_certificate_beside_another_key_is_not_adopted(tmp_path: Path) -> None:
    pki = TestCA()
    leaf, other = pki.issue("web"), pki.issue("web")
    manager = _manager(tmp_path, pki, other.key_pem, leaf.chain_pem)
    assert not manager.ready("web")
    assert manager.held["web"].lifecycle.should_renew(dt.datetime.now(dt.UTC))


def test_a_new_trust_bundle_the_held_certificate_does_not_chain_to_renews_it_now(
    tmp_path: Path,
) -> None:
    pki, replacement = TestCA(), TestCA(name="Replacement")
    leaf = pki.issue("web")
    manager = _manager(tmp_path, pki, leaf.key_pem, leaf.chain_pem)
    now = dt.datetime.now(dt.UTC)
    assert not manager.held["web"].lifecycle.should_renew(now)

    # A bundle that still holds the old root (a rotation adding one) changes nothing...
    manager._write_bundle((pki.bundle_pem + replacement.bundle_pem).decode())
    assert not manager.held["web"].lifecycle.should_renew(now)
    # ...one without it means the certificate is renewed at once, while the old one keeps
    # serving in the meantime (the sidecar is not told to drop it).
    manager._write_bundle(replacement.bundle_pem.decode())
    assert manager.held["web"].lifecycle.should_renew(now)
    assert manager.ready("web")
    assert (manager.dir / "bundle.pem").read_bytes() == replacement.bundle_pem
