"""The npm `consul` client (tests/npm, installed by scripts/bootstrap test) against a real
`weft server`: services and health, ?filter=, ?dc=, ?node-meta=, agent check register and
deregister, sessions and a lock (acquire, release), /v1/txn, KV, catalog register and
deregister, the node views, health of a node, members, ACL self and service maintenance, as a
Node.js service would call them."""

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
    assert seen["otherDcKv"] == 500
    assert seen["agentFiltered"] == ["orders-2"]
    # A check registered against orders-2 (TTL: critical until passed), then deregistered.
    assert seen["checkListed"] == "orders-2"
    assert seen["whileCritical"] == ["orders-1"]
    assert seen["afterPass"] == ["orders-1", "orders-2"] and seen["checkGone"] is True
    assert (seen["lockA"], seen["lockB"], seen["holder"], seen["lockIndex"]) == (
        True,
        False,
        "a",
        1,
    )
    assert seen["sessionInfo"] == "a" and seen["renewed"] is True
    status, content_type, message = seen["renewGone"]  # Consul's plain-text 404
    assert status == 404 and content_type.startswith("text/plain") and "not found" in message
    assert seen["lockBAfter"] is True  # destroying a's session handed the lock over
    assert seen["sessions"] == ["b"] and seen["sessionsOnNode"] == ["b"]
    assert seen["releaseByOther"] is False and seen["released"] is True
    assert seen["afterRelease"] == [True, 2, "done"]  # LockIndex counts both acquisitions
    assert seen["txnResults"] == ["cart/1", "jobs/leader"]
    assert seen["txnConflict"] == 409 and seen["cart2"] == "absent"
    assert seen["kvKeys"] == ["cart/1", "cart/3"]
    assert seen["kvRecurse"] == ["apple", "plum"]
    assert (seen["casStale"], seen["casFresh"], seen["kvDeleted"]) == (False, True, True)
    # One node address in every view.
    assert seen["nodeAddress"] == "192.0.2.44" and seen["nodeMeta"] == {"rack": "r2"}
    assert seen["nodeList"] == ["192.0.2.44"] and seen["legacyNodeAddress"] == "192.0.2.44"
    assert seen["healthNode"] == [["legacy-alive", "passing"]]
    assert (seen["nodeMetaMatch"], seen["nodeMetaMiss"]) == (1, 0)
    assert "ext-1" in seen["members"]
    assert seen["tokenSelf"] == ["weft-operator"]
    assert seen["legacyAfterDeregister"] == 0 and "ext-1" not in seen["nodesAfterDeregister"]
    assert seen["bareNode"] == ["192.0.2.44", 0]
    assert seen["missingNode"] in ("null", "undefined")  # 200 with null, not an error
    assert seen["afterMaintenance"] == ["orders-1"]
    assert seen["maintenanceOver"] == ["orders-1", "orders-2"]
