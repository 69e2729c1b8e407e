"""Which certificate on disk the agent may reuse at start (`agent._cert_bundle.reuse_problem`),
and the one-file layout of key and chain the proxy reads."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest

from agent._cert_bundle import Pair, reuse_problem
from ca import SpiffeId
from tests.harness import TestCA


@pytest.fixture(scope="module")
def pki() -> TestCA:
    return TestCA()


def _write(tmp_path: Path, key_pem: bytes, chain_pem: bytes) -> Path:
    path = tmp_path / "web.pem"
    path.write_bytes(Pair(key_pem, chain_pem).combined())
    return path


def now() -> dt.datetime:
    # Read at each check: a module-level time goes stale when collection runs long before the test.
    return dt.datetime.now(dt.UTC)


def _web(pki: TestCA) -> SpiffeId:
    return SpiffeId.parse(pki.spiffe("web"))


def test_a_matching_valid_pair_for_the_identity_and_bundle_is_reused(
    pki: TestCA, tmp_path: Path
) -> None:
    leaf = pki.issue("web")
    path = _write(tmp_path, leaf.key_pem, leaf.chain_pem)
    assert reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) is None


def test_a_certificate_whose_key_is_another_is_not_reused(pki: TestCA, tmp_path: Path) -> None:
    leaf, other = pki.issue("web"), pki.issue("web")
    path = _write(tmp_path, other.key_pem, leaf.chain_pem)
    assert reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) == (
        "the key is not the certificate's"
    )


def test_an_expired_or_not_yet_valid_certificate_is_not_reused(pki: TestCA, tmp_path: Path) -> None:
    expired = pki.issue_expired("web")
    path = _write(tmp_path, expired.key_pem, expired.chain_pem)
    assert "not valid now" in (reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) or "")
    early = pki.issue("web", not_before=now() + dt.timedelta(hours=1))
    path = _write(tmp_path, early.key_pem, early.chain_pem)
    assert "not valid now" in (reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) or "")


def test_a_certificate_for_another_identity_is_not_reused(pki: TestCA, tmp_path: Path) -> None:
    api = pki.issue("api")
    path = _write(tmp_path, api.key_pem, api.chain_pem)
    problem = reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) or ""
    assert problem.startswith("for spiffe://weft.test/ns/default/svc/api, not ")
    two = pki.issue(None)  # no URI SAN at all
    path = _write(tmp_path, two.key_pem, two.chain_pem)
    assert "no URI SAN" in (reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) or "")


def test_a_certificate_of_another_ca_is_not_reused(pki: TestCA, tmp_path: Path) -> None:
    foreign = TestCA(name="Elsewhere")
    leaf = foreign.issue("web")
    path = _write(tmp_path, leaf.key_pem, leaf.chain_pem)
    problem = reuse_problem(path, _web(pki), pki.bundle_pem.decode(), now()) or ""
    assert problem.startswith("does not chain to the current trust bundle"), problem
    # ...and no bundle at all is no proof either.
    assert reuse_problem(path, _web(pki), "", now()) == "no trust bundle to check its chain against"


def test_missing_truncated_or_keyless_files_are_not_reused(pki: TestCA, tmp_path: Path) -> None:
    leaf = pki.issue("web")
    bundle = pki.bundle_pem.decode()
    assert reuse_problem(tmp_path / "absent.pem", _web(pki), bundle, now()) == (
        "no certificate on disk"
    )
    whole = Pair(leaf.key_pem, leaf.chain_pem).combined()
    cut = tmp_path / "cut.pem"
    cut.write_bytes(whole[: len(whole) // 2])
    assert (reuse_problem(cut, _web(pki), bundle, now()) or "").startswith("unreadable")
    keyless = tmp_path / "keyless.pem"
    keyless.write_bytes(leaf.chain_pem)
    assert reuse_problem(keyless, _web(pki), bundle, now()) == (
        "unreadable: expected one private key, found 0"
    )


def test_the_combined_file_loads_as_both_cert_and_key_like_the_proxy_does(
    pki: TestCA, tmp_path: Path
) -> None:
    leaf = pki.issue("web")
    path = _write(tmp_path, leaf.key_pem, leaf.chain_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(path, path)  # what proxy/_tls.py does with tls.cert == tls.key
    pair = Pair.parse(path.read_bytes())
    assert pair.key_pem == leaf.key_pem and pair.chain_pem == leaf.chain_pem
