"""The agent's key and certificate on disk always belong together, even across kill -9, and a
restarted agent reuses a certificate only if it is still good for its key, identity and CA."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from agent._cert_bundle import Pair, reuse_problem
from ca import SpiffeId
from tests.harness import TestCA, free_port, wait_until

# Imported for its fixture: a server with an initialised CA that allows short leaves.
from tests.integration.test_agent_mesh import TD, Mesh, mesh  # noqa: F401

WRITER = textwrap.dedent(
    """
    import sys, itertools
    from pathlib import Path
    from agent._cert_bundle import Pair
    from agent._certs import store_pair

    path = Path(sys.argv[1])
    pairs = [Pair(Path(k).read_bytes(), Path(c).read_bytes()) for k, c in
             zip(sys.argv[2::2], sys.argv[3::2])]
    print("writing", flush=True)
    for pair in itertools.cycle(pairs):
        store_pair(path, pair)
    """
)


def test_kill_9_at_any_point_of_a_renewal_never_leaves_a_mismatched_pair(tmp_path: Path) -> None:
    pki = TestCA()
    identity = SpiffeId.parse(pki.spiffe("web"))
    args = []
    for n in range(3):
        leaf = pki.issue("web")
        (tmp_path / f"k{n}").write_bytes(leaf.key_pem)
        (tmp_path / f"c{n}").write_bytes(leaf.chain_pem)
        args += [str(tmp_path / f"k{n}"), str(tmp_path / f"c{n}")]
    certs = tmp_path / "certs"
    certs.mkdir()
    target = certs / "web.pem"
    rng = random.Random(11)
    seen = set()
    for _ in range(15):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            time.sleep(rng.uniform(0, 0.05))  # a random point in the write loop
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
        if not target.exists():
            continue  # killed before the first rename: no pair, never half a one
        problem = reuse_problem(target, identity, pki.bundle_pem.decode(), _now())
        assert problem is None, problem
        seen.add(target.read_bytes())
    assert len(seen) >= 2  # the kills did land in different writes
    # What a killed writer leaves is only a temporary file, which the agent sweeps at start.
    from agent._certs import CertManager

    CertManager(None, certs)  # type: ignore[arg-type]
    assert [p.name for p in certs.iterdir()] == ["web.pem"]


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _serial(agent) -> str:
    return agent.status()["services"][0]["sidecar"]["certificate_serial"]


@pytest.mark.timeout(120)
def test_a_certificate_on_disk_that_does_not_match_its_key_is_not_reused(
    mesh: Mesh,  # noqa: F811
) -> None:
    agent = mesh.agent("vm-c")
    agent.define(
        "web",
        f'name = "web"\nport = {free_port()}\n[sidecar]\nport = {free_port()}\n',
    )
    agent.start()
    pem = agent.dir / "data" / "certs" / "web.pem"
    bundle = agent.dir / "data" / "certs" / "bundle.pem"
    identity = SpiffeId.parse(f"spiffe://{TD}/ns/default/svc/web")
    first = _serial(agent)
    assert first and reuse_problem(pem, identity, bundle.read_text(), _now()) is None

    # A clean restart reuses the good certificate: no new signing.
    agent.stop()
    agent.start()
    assert _serial(agent) == first
    assert "not reusing" not in agent.log()

    # The key next to the certificate is now another one: the agent must not serve with it.
    agent.stop()
    pair = Pair.parse(pem.read_bytes())
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    pem.write_bytes(Pair(stranger, pair.chain_pem).combined())
    agent.start()
    second = _serial(agent)
    assert second and second != first
    assert "not reusing the certificate on disk: the key is not the certificate's" in agent.log()
    assert reuse_problem(pem, identity, bundle.read_text(), _now()) is None
    # The sidecar serves the new certificate (its /config names the one file as cert and key).
    admin = agent.status()["services"][0]["sidecar"]["proxy"]["admin"]
    wait_until(
        lambda: httpx.get(f"http://{admin}/ready").status_code == 200, timeout=20, what="proxy"
    )
