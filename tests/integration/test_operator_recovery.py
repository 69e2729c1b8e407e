"""The cluster cannot be locked out: the last operator token is kept, and a lost one is
recovered on a server host with `weft server --recover-operator` (etcd access + the CA's KEK)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx

from ca import KeyEncryptionKey
from registry.etcd import EtcdClient
from tests.harness import WeftServer, assert_documented
from tests.harness._procs import weft_command


def _weft(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    if token:
        env["WEFT_TOKEN"] = token
    return subprocess.run(
        [*weft_command(), *args], capture_output=True, text=True, env=env, timeout=60
    )


def _recover(server: WeftServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return _weft(
        "server",
        "--recover-operator",
        "--etcd-endpoints",
        ",".join(server.etcd_endpoints),
        "--etcd-prefix",
        server.prefix,
        *extra,
    )


async def _operator_keys(etcd_client: EtcdClient, prefix: str) -> list[str]:
    import json

    found = await etcd_client.range_all(prefix + "tokens/")
    return [kv.key for kv in found.kvs if json.loads(kv.value)["role"] == "operator"]


async def test_revoking_the_last_operator_token_is_refused_with_409_and_changes_nothing(
    server: WeftServer, etcd_client: EtcdClient, prefix: str
) -> None:
    tokens = httpx.get(server.url + "/v1/tokens", headers=server.headers()).json()
    (only,) = [t for t in tokens if t["role"] == "operator"]
    before = await _operator_keys(etcd_client, prefix)

    resp = httpx.delete(server.url + f"/v1/tokens/{only['accessor']}", headers=server.headers())
    assert resp.status_code == 409
    error = resp.json()["error"]
    assert error["field"] == "accessor"
    assert "last operator token" in error["message"]
    assert "--recover-operator" in error["message"]
    cli = _weft("token", "revoke", only["accessor"], "--address", server.url, token=server.token)
    assert cli.returncode != 0
    assert "HTTP 409" in cli.stderr and "--recover-operator" in cli.stderr, cli.stderr
    assert await _operator_keys(etcd_client, prefix) == before
    assert httpx.get(server.url + "/v1/tokens", headers=server.headers()).status_code == 200

    # With a second operator token the first may go; then the second is the last one.
    second = httpx.post(
        server.url + "/v1/tokens", json={"role": "operator"}, headers=server.headers()
    ).json()
    gone = httpx.delete(server.url + f"/v1/tokens/{only['accessor']}", headers=server.headers())
    assert gone.status_code == 200 and gone.json()["revoked"] is True
    last = httpx.delete(
        server.url + f"/v1/tokens/{second['accessor']}", headers=server.headers(second["secret"])
    )
    assert last.status_code == 409
    assert len(await _operator_keys(etcd_client, prefix)) == 1


def test_the_refused_revoke_is_a_409_the_openapi_document_declares(server: WeftServer) -> None:
    # schemathesis found the refusal answered a status the document did not list.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    me = httpx.get(server.url + "/v1/tokens/self", headers=server.headers()).json()
    resp = httpx.delete(server.url + f"/v1/tokens/{me['accessor']}", headers=server.headers())
    assert resp.status_code == 409
    assert_documented(doc, "DELETE", "/v1/tokens/{accessor}", resp)


async def test_recover_operator_mints_a_working_token_only_after_a_lockout(
    start_server, etcd_client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    kek = tmp_path / "ca.kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server("--ca-kek-file", str(kek))
    init = httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": "recover.test"}, headers=server.headers()
    )
    assert init.status_code == 200, init.text
    out = tmp_path / "recovered.token"

    # Not locked out: nothing is minted, and it says why.
    not_needed = _recover(server, "--ca-kek-file", str(kek), "--bootstrap-token-file", str(out))
    assert not_needed.returncode == 1
    assert "not needed" in not_needed.stderr and not out.exists()
    assert len(await _operator_keys(etcd_client, prefix)) == 1

    # Lock the cluster out the only way left: delete every operator token in etcd itself.
    for key in await _operator_keys(etcd_client, prefix):
        await etcd_client.delete(key)
    locked = httpx.get(server.url + "/v1/tokens", headers=server.headers())
    assert locked.status_code == 403

    wrong = tmp_path / "wrong.kek"
    wrong.write_text(KeyEncryptionKey.generate().to_text())
    refused = _recover(server, "--ca-kek-file", str(wrong), "--bootstrap-token-file", str(out))
    assert refused.returncode == 1 and "key-encryption key" in refused.stderr
    no_kek = _recover(server, "--bootstrap-token-file", str(out))
    assert no_kek.returncode == 1 and "key-encryption key" in no_kek.stderr
    assert not out.exists() and await _operator_keys(etcd_client, prefix) == []

    recovered = _recover(server, "--ca-kek-file", str(kek), "--bootstrap-token-file", str(out))
    assert recovered.returncode == 0, recovered.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = out.read_text().strip()
    assert secret not in recovered.stdout + recovered.stderr  # written to the file only
    works = httpx.get(server.url + "/v1/tokens", headers=server.headers(secret))
    assert works.status_code == 200
    assert [t["role"] for t in works.json()] == ["operator"]
    assert "recovered" in works.json()[0]["description"]
    made = httpx.post(
        server.url + "/v1/tokens", json={"role": "read"}, headers=server.headers(secret)
    )
    assert made.status_code == 200

    # A second run finds the new operator token and mints nothing more.
    again = _recover(server, "--ca-kek-file", str(kek))
    assert again.returncode == 1 and "not needed" in again.stderr
    assert len(await _operator_keys(etcd_client, prefix)) == 1


def test_recover_operator_prints_the_token_once_without_a_file(start_server) -> None:
    import trio

    server = start_server()  # no CA initialised: etcd access alone is the requirement

    async def wipe() -> None:
        async with EtcdClient(server.etcd_endpoints) as etcd:
            await etcd.delete(server.prefix + "tokens/", prefix=True)

    trio.run(wipe)
    result = _recover(server)
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "shown once" in x]
    secret = line.rsplit(" ", 1)[1]
    me = httpx.get(server.url + "/v1/tokens/self", headers=server.headers(secret))
    assert me.status_code == 200 and me.json()["role"] == "operator"


def test_recover_operator_refuses_a_prefix_that_was_never_bootstrapped(
    etcd, tmp_path: Path
) -> None:
    result = _weft(
        "server",
        "--recover-operator",
        "--etcd-endpoints",
        ",".join(etcd.endpoints),
        "--etcd-prefix",
        "/never-bootstrapped-here/",
    )
    assert result.returncode == 1
    assert "never bootstrapped" in result.stderr and "--bootstrap" in result.stderr
