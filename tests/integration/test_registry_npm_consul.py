"""The npm `consul` client (tests/npm, installed by scripts/bootstrap test) against a real
`weft server`: services and health, ?filter=, ?dc=, sessions and a lock, /v1/txn, catalog
registration, members and service maintenance, as a Node.js service would call them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import WeftServer

NPM = Path(__file__).parents[1] / "npm"


@pytest.fixture(autouse=True)
def _npm_client_installed() -> None:
    # A failure, not a skip: a green run must never hide a missing install step.
    if shutil.which("node") is None or not (NPM / "node_modules" / "consul").is_dir():
        pytest.fail("node or tests/npm/node_modules missing: run scripts/bootstrap test")


def test_the_npm_consul_client_exercises_the_consul_api(server: WeftServer) -> None:
    result = subprocess.run(
        ["node", str(NPM / "exercise.js"), server.url, server.token or ""],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert sorted(seen["passing"]) == ["orders-1", "orders-2"]  # orders-2 has no checks
    assert seen["filtered"] == ["orders-1"]
    assert seen["badFilter"] == 400
    assert seen["otherDc"] == 500
    assert seen["datacenters"] == ["dc1"]
    assert (seen["lockA"], seen["lockB"], seen["holder"], seen["lockIndex"]) == (
        True,
        False,
        "a",
        1,
    )
    assert seen["sessionInfo"] == "a" and seen["renewed"] is True
    assert seen["lockBAfter"] is True  # destroying a's session handed the lock over
    assert seen["sessions"] == ["b"]
    assert seen["txnResults"] == ["cart/1", "jobs/leader"]
    assert seen["txnConflict"] == 409 and seen["cart2"] == "absent"
    assert seen["nodeAddress"] == "192.0.2.44" and seen["nodeMeta"] == {"rack": "r2"}
    assert seen["healthNode"] == []
    assert "ext-1" in seen["members"]
    assert seen["afterMaintenance"] == ["orders-1"]
