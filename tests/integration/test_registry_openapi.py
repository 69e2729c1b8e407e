"""The registry's OpenAPI document against the server it describes.

First parity: the document (`/v1/openapi.json`) is rendered from the declarations the router
mounts, and every route a `weft server` serves is in it with each path parameter declared and
every answer typed. Then schemathesis, as a subprocess, fuzzes a real `weft server` (real
etcd, the CA initialised) from that document: examples, then the coverage phase (boundary and
invalid values of every parameter and body), then generated inputs; deterministic, a fixed
number of cases per operation, each request timed out. It must find no 5xx, no answer the
document does not declare (status, content type, headers, body schema), and no operation that
serves a caller without a token. It holds the only operator token and may try every operation
(revoking tokens included) but cannot mint another operator (`harness/schemathesis_hooks.py`),
so every revoke of that token it tries must be refused: after the run the token still works,
is still the one operator in etcd, and revoking it is still a 409.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import httpx
import pytest
import trio

from ca import KeyEncryptionKey
from registry._config import ServerConfig
from registry._openapi import openapi_path
from registry.etcd import EtcdClient
from registry.server import RegistryServer, standard_extensions
from tests.harness import WeftServer
from tests.harness._procs import VENV_BIN

REPO = Path(__file__).resolve().parents[2]

# What schemathesis checks. `negative_data_rejection` is left out on purpose: Consul's rules
# (and so Weft's) take `null` for an absent field and `?recurse=anything` as a set flag, which
# that check counts as accepting invalid data. `positive_data_acceptance` wants every
# schema-valid input to succeed, but a random service name is rightly a 404.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
MAX_EXAMPLES = 10  # per operation and phase: about 3,500 requests, ~45 s on an idle machine
RUN_DEADLINE = 240.0  # the run is cut (and the test fails) past this, however busy the host


def _served_routes(etcd_endpoints: list[str], prefix: str) -> list[tuple[str, str, list[str]]]:
    """(method, OpenAPI path, path parameter names) of every route `weft server` mounts."""
    config = ServerConfig(etcd_endpoints=tuple(etcd_endpoints), etcd_prefix=prefix)
    server = RegistryServer(config, extensions=standard_extensions(config))
    return [
        (route.method, openapi_path(route.pattern), re.findall(r"\{(\w+)", route.pattern))
        for route in server.app.router.routes
    ]


def test_every_served_route_is_in_the_document_with_its_path_parameters_and_typed_answers(
    server: WeftServer, prefix: str
) -> None:
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    routes = _served_routes(server.etcd_endpoints, prefix)
    served = {(method.lower(), path) for method, path, _ in routes}
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert len(served) == len(routes)  # no route shadows another
    for method, path, names in routes:
        operation = doc["paths"][path][method.lower()]
        in_path = [p for p in operation["parameters"] if p["in"] == "path"]
        assert [p["name"] for p in in_path] == names, (method, path)
        assert all(p["required"] is True for p in in_path), (method, path)
        for status, reply in operation["responses"].items():
            for media, content in reply.get("content", {}).items():
                # `{}` is "any JSON": the sessions, txn, node and check routes once said that.
                assert content["schema"] not in ({}, None), (method, path, status, media)
        assert any(s.startswith("2") for s in operation["responses"]), (method, path)


async def _operator_records(etcd_client: EtcdClient, prefix: str) -> list[dict[str, object]]:
    found = await etcd_client.range_all(prefix + "tokens/")
    records = [json.loads(kv.value) for kv in found.kvs]
    return [r for r in records if r["role"] == "operator"]


@pytest.mark.timeout(RUN_DEADLINE + 60)
async def test_schemathesis_finds_no_5xx_no_undeclared_answer_and_cannot_lock_the_cluster_out(
    start_server, etcd_client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    kek = tmp_path / "ca.kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    # Blocking queries the fuzzer asks for (`index=<big>&wait=`) park at most a second.
    server = start_server("--ca-kek-file", str(kek), "--max-blocking-wait", "1s")
    token = server.token
    assert token
    init = httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": "fuzz.test"}, headers=server.headers()
    )
    assert init.status_code == 200, init.text

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_", "SCHEMATHESIS_"))}
    env["PYTHONPATH"] = str(REPO)
    env["SCHEMATHESIS_HOOKS"] = "tests.harness.schemathesis_hooks"
    command = [
        str(VENV_BIN / "schemathesis"),
        "run",
        server.url + "/v1/openapi.json",
        "--header",
        f"X-Consul-Token: {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",  # the same cases every run (and no example database)
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--continue-on-failure",
        "--no-color",
    ]
    started = trio.current_time()
    with trio.fail_after(RUN_DEADLINE):
        run = await trio.run_process(
            command, env=env, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False
        )
    elapsed = trio.current_time() - started
    report = run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace")
    assert run.returncode == 0, report[-20000:]
    # Every operation of the document was fuzzed but the document itself (schemathesis leaves
    # out the URL it loaded the schema from).
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    operations = sum(len(ops) for ops in doc["paths"].values()) - 1
    tested = re.search(r"Tested: (\d+)", report)
    assert tested is not None and int(tested.group(1)) == operations, report[-3000:]
    assert elapsed < RUN_DEADLINE

    # The server lived through it and logged no handler bug.
    assert server.proc is not None and server.proc.alive()
    assert "internal error" not in server.log()
    # Not locked out: the token works, is still the one operator in etcd, and cannot go.
    me = httpx.get(server.url + "/v1/tokens/self", headers=server.headers())
    assert me.status_code == 200 and me.json()["role"] == "operator"
    operators = await _operator_records(etcd_client, prefix)
    assert [r["secret_hash"] for r in operators] == [hashlib.sha256(token.encode()).hexdigest()]
    accessor = me.json()["accessor"]
    last = httpx.delete(server.url + f"/v1/tokens/{accessor}", headers=server.headers())
    assert last.status_code == 409
    assert httpx.get(server.url + "/v1/tokens", headers=server.headers()).status_code == 200
