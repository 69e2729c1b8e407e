"""The trust bundle in the shapes `GET /v1/ca/roots` and Consul's roots endpoint serve."""

from __future__ import annotations

import json

import pytest

from ca import CertificateAuthority, KeyEncryptionKey, MemoryCAStore, TrustBundle
from tests.harness import FakeClock


@pytest.fixture
async def rotated() -> TrustBundle:
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate(), clock=FakeClock())
    await ca.initialise("weft.local")
    await ca.rotate()
    return ca.bundle()


async def test_the_pem_bundle_lists_the_active_root_first(rotated: TrustBundle) -> None:
    pem = rotated.pem()
    assert pem.count("BEGIN CERTIFICATE") == 2
    assert pem.startswith(rotated.active.certificate_pem)


async def test_the_consul_shape_has_consuls_fields_and_types(rotated: TrustBundle) -> None:
    doc = json.loads(json.dumps(rotated.to_consul()))
    assert doc["ActiveRootID"] == rotated.active.id and doc["TrustDomain"] == "weft.local"
    active, retiring = doc["Roots"]
    assert active["Active"] is True and retiring["Active"] is False
    for root in doc["Roots"]:
        assert set(root) >= {
            "ID",
            "Name",
            "SerialNumber",
            "SigningKeyID",
            "NotBefore",
            "NotAfter",
            "RootCert",
            "IntermediateCerts",
            "Active",
            "PrivateKeyType",
            "PrivateKeyBits",
        }
        assert 0 < root["SerialNumber"] < 2**64
        assert root["PrivateKeyType"] == "ec" and root["PrivateKeyBits"] == 256
        assert root["NotAfter"].endswith("Z") and root["RootCert"].startswith("-----BEGIN")
    assert len(active["IntermediateCerts"]) == 2  # the intermediate and the cross-signed root


async def test_the_native_shape_says_when_a_retiring_root_goes(rotated: TrustBundle) -> None:
    doc = rotated.to_json()
    assert doc["active_root_id"] == rotated.active.id and doc["bundle_pem"] == rotated.pem()
    active, retiring = doc["roots"]
    assert active["drop_after"] is None and retiring["drop_after"].endswith("UTC")
    assert len(active["fingerprint_sha256"]) == 95
