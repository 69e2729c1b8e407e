"""The CA's certificates as the real `openssl` binary sees them."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ca import (
    CertificateAuthority,
    ImportedCA,
    IssuedCertificate,
    KeyEncryptionKey,
    KeyType,
    MemoryCAStore,
    Operator,
    SpiffeId,
    UnsupportedKey,
    fingerprint_sha256,
    make_key_and_csr,
)
from tests.harness import FakeClock

pytestmark = pytest.mark.timeout(60)
TD = "weft.local"
WEB = SpiffeId(TD, "default", "web")


def openssl(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=30
    )
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stderr}"
    return done.stdout


def verify(bundle_pem: str, chain: tuple[str, ...], leaf_pem: str, tmp: Path, *extra: str) -> str:
    (tmp / "bundle.pem").write_text(bundle_pem)
    (tmp / "intermediate.pem").write_text("".join(chain))
    (tmp / "leaf.pem").write_text(leaf_pem)
    return (
        subprocess.run(
            [
                "openssl",
                "verify",
                *extra,
                "-CAfile",
                "bundle.pem",
                "-untrusted",
                "intermediate.pem",
                "leaf.pem",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=30,
        ).stdout
        + ""
    )


async def _ca(root_key_type: KeyType = KeyType.EC_P256) -> CertificateAuthority:
    ca = CertificateAuthority(
        MemoryCAStore(), KeyEncryptionKey.generate(), clock=FakeClock(datetime.now(UTC))
    )
    await ca.initialise(TD, root_key_type=root_key_type)
    return ca


async def _leaf(ca: CertificateAuthority, identity: SpiffeId = WEB) -> IssuedCertificate:
    return await ca.sign(make_key_and_csr(identity).csr_pem, identity, Operator())


@pytest.mark.parametrize("root_key_type", [KeyType.EC_P256, KeyType.RSA_2048, KeyType.RSA_3072])
async def test_openssl_verifies_an_issued_leaf_against_the_bundle(
    tmp_path: Path, root_key_type: KeyType
) -> None:
    ca = await _ca(root_key_type)
    issued = await _leaf(ca)
    out = verify(ca.bundle().pem(), issued.chain_pem, issued.certificate_pem, tmp_path)
    assert out.strip() == "leaf.pem: OK"
    for purpose in ("sslserver", "sslclient"):
        out = verify(
            ca.bundle().pem(),
            issued.chain_pem,
            issued.certificate_pem,
            tmp_path,
            "-purpose",
            purpose,
        )
        assert out.strip() == "leaf.pem: OK", purpose


async def test_openssl_shows_the_spiffe_id_and_the_usages(tmp_path: Path) -> None:
    issued = await _leaf(await _ca())
    (tmp_path / "leaf.pem").write_text(issued.certificate_pem)
    text = openssl("x509", "-in", tmp_path / "leaf.pem", "-noout", "-text")
    assert (
        "X509v3 Subject Alternative Name: \n                URI:spiffe://weft.local/ns/default/svc/web\n"
        in text
    )
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    assert "DNS:" not in text and "Key Encipherment" not in text


async def test_openssl_and_the_ca_agree_on_fingerprints(tmp_path: Path) -> None:
    ca = await _ca()
    (tmp_path / "root.pem").write_text(ca.bundle().active.certificate_pem)
    out = openssl("x509", "-in", tmp_path / "root.pem", "-noout", "-fingerprint", "-sha256")
    assert out.strip().split("=", 1)[1] == fingerprint_sha256(ca.bundle().active.certificate_pem)
    assert ca.bundle().active.fingerprint == fingerprint_sha256(ca.bundle().active.certificate_pem)


async def test_a_csr_made_by_openssl_asking_for_ca_and_extra_sans_gets_a_plain_leaf(
    tmp_path: Path,
) -> None:
    ca = await _ca()
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "csr.pem",
        "-subj",
        "/CN=evil",
        "-addext",
        f"subjectAltName=URI:{WEB.uri},DNS:bank.example.com,IP:10.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tmp_path,
    )
    issued = await ca.sign((tmp_path / "csr.pem").read_bytes(), WEB, Operator())
    (tmp_path / "leaf.pem").write_text(issued.certificate_pem)
    text = openssl("x509", "-in", tmp_path / "leaf.pem", "-noout", "-text")
    assert "CA:FALSE" in text and "CA:TRUE" not in text
    assert "bank.example.com" not in text and "10.0.0.1" not in text
    assert "Certificate Sign" not in text
    assert "Subject: CN = web" in text


async def test_an_openssl_rsa_1024_csr_is_refused(tmp_path: Path) -> None:
    ca = await _ca()
    openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-subj",
        "/CN=web",
        cwd=tmp_path,
    )
    with pytest.raises(UnsupportedKey, match="RSA 1024"):
        await ca.sign((tmp_path / "c.pem").read_bytes(), WEB, Operator())


async def test_a_pki_made_by_openssl_can_be_imported_and_its_root_verifies_our_leaves(
    tmp_path: Path,
) -> None:
    (tmp_path / "ext.cnf").write_text(
        "[ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:3072",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/O=Corp/CN=Corp Root",
        cwd=tmp_path,
    )
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "int.key",
        "-out",
        "int.csr",
        "-subj",
        "/O=Corp/CN=Corp Mesh CA",
        cwd=tmp_path,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "int.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "20",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "ca",
        "-out",
        "int.pem",
        cwd=tmp_path,
    )
    ca = CertificateAuthority(
        MemoryCAStore(), KeyEncryptionKey.generate(), clock=FakeClock(datetime.now(UTC))
    )
    await ca.import_ca(
        TD,
        ImportedCA(
            *((tmp_path / name).read_bytes() for name in ("root.pem", "int.pem", "int.key"))
        ),
    )
    issued = await _leaf(ca)
    check = tmp_path / "check"
    check.mkdir()
    out = verify(
        (tmp_path / "root.pem").read_text(), issued.chain_pem, issued.certificate_pem, check
    )
    assert out.strip() == "leaf.pem: OK"


async def test_during_a_rotation_openssl_verifies_every_leaf_under_every_bundle_in_use(
    tmp_path: Path,
) -> None:
    """Old and new leaves, under the stale bundle (old root only), the overlap bundle, and —
    for new leaves — the bundle after the overlap (new root only)."""
    ca = await _ca()
    old_root = ca.bundle().active.certificate_pem
    old_leaf = await _leaf(ca)
    await ca.rotate()
    new_root = ca.bundle().active.certificate_pem
    new_leaf = await _leaf(ca)
    cases = {
        ("old leaf", "stale bundle"): (old_leaf, old_root),
        ("old leaf", "overlap bundle"): (old_leaf, ca.bundle().pem()),
        ("new leaf", "stale bundle"): (new_leaf, old_root),
        ("new leaf", "overlap bundle"): (new_leaf, ca.bundle().pem()),
        ("new leaf", "new root only"): (new_leaf, new_root),
    }
    for (leaf_name, bundle_name), (leaf, bundle) in cases.items():
        out = verify(bundle, leaf.chain_pem, leaf.certificate_pem, tmp_path)
        assert out.strip() == "leaf.pem: OK", (leaf_name, bundle_name, out)
    bad = verify(new_root, old_leaf.chain_pem, old_leaf.certificate_pem, tmp_path)
    assert "OK" not in bad  # an old leaf is not trusted once only the new root is
