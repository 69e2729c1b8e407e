"""`weft apply|get|diff|delete` against a real server and etcd: traffic resources stored whole
with a revision, and bad files refused by file, document and field with nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from registry.etcd import EtcdClient
from tests.harness import WeftServer

from .test_cli_registry import weft

pytestmark = pytest.mark.timeout(90)

ROUTE = """\
apiVersion: weft.dev/v1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - name: canary
    match:
    - headers: [{name: x-canary, exact: "1"}]
    backends: [{service: reviews, subset: v2}]
  - name: books
    match:
    - method: GET
      path: {regex: "/books/[0-9]+"}
    timeout: 300ms
    retries: {attempts: 2, retryOn: [gateway-error]}
    backends:
    - {service: reviews, subset: v1, weight: 90}
    - {service: reviews, subset: v2, weight: 10}
"""
SUBSETS = """\
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: reviews-v1}
spec: {service: reviews, subset: v1, tags: [v1]}
---
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: reviews-v2}
spec: {service: reviews, subset: v2, meta: {version: v2}}
---
apiVersion: weft.dev/v1
kind: ServiceDefaults
metadata: {name: reviews}
spec:
  retryBudget: {ratio: 0.2, minPerSecond: 10, ttl: 10s}
"""


async def stored_keys(etcd_client: EtcdClient, prefix: str) -> list[str]:
    result = await etcd_client.range(f"{prefix}config/", prefix=True)
    return sorted(kv.key[len(prefix) :] for kv in result.kvs)


def cli(server: WeftServer, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return weft(*args, "--address", server.url, token=server.token, stdin=stdin)


async def test_apply_a_directory_then_get_diff_and_delete(
    server: WeftServer, tmp_path: Path, etcd_client: EtcdClient, prefix: str
) -> None:
    config = tmp_path / "traffic"
    config.mkdir()
    (config / "a-route.yaml").write_text(ROUTE)
    (config / "b-subsets.yaml").write_text(SUBSETS)

    dry = cli(server, "apply", "-f", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Route/reviews created (dry run)" in dry.stdout
    assert await stored_keys(etcd_client, prefix) == []  # a dry run stores nothing

    done = cli(server, "apply", "-f", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and all(" created at revision " in line for line in lines), lines
    assert await stored_keys(etcd_client, prefix) == [
        "config/Route/reviews",
        "config/ServiceDefaults/reviews",
        "config/Subset/reviews-v1",
        "config/Subset/reviews-v2",
    ]

    table = cli(server, "get", "all")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["KIND", "NAME", "SERVICE", "REVISION"]
    assert rows[4][:3] == ["Subset", "reviews-v2", "reviews/v2"]

    as_yaml = list(yaml.safe_load_all(cli(server, "get", "all", "-o", "yaml").stdout))
    assert [d["kind"] for d in as_yaml] == ["Route", "ServiceDefaults", "Subset", "Subset"]
    # what `get -o yaml` prints can be applied again unchanged (revisions are the server's)
    (tmp_path / "roundtrip.yaml").write_text(cli(server, "get", "all", "-o", "yaml").stdout)
    again = cli(server, "apply", "-f", str(tmp_path / "roundtrip.yaml"))
    assert again.returncode == 0 and again.stdout.count(" unchanged at revision ") == 4, again

    one = json.loads(cli(server, "get", "route", "reviews", "-o", "json").stdout)
    assert one["spec"]["rules"][1]["timeout"] == "300ms"
    revision = one["metadata"]["revision"]
    assert revision > 0

    again = cli(server, "apply", "-f", str(config))
    assert "Route/reviews unchanged" in again.stdout
    same = cli(server, "diff", "-f", str(config))
    assert same.returncode == 0 and same.stdout == ""

    (config / "a-route.yaml").write_text(ROUTE.replace("timeout: 300ms", "timeout: 500ms"))
    changed = cli(server, "diff", "-f", str(config))
    assert changed.returncode == 1
    assert "-    timeout: 300ms" in changed.stdout and "+    timeout: 500ms" in changed.stdout
    applied = cli(server, "apply", "-f", str(config / "a-route.yaml"))
    assert "Route/reviews configured at revision" in applied.stdout
    newer = json.loads(cli(server, "get", "Route", "reviews", "-o", "json").stdout)
    assert newer["metadata"]["revision"] > revision

    gone = cli(server, "delete", "Route", "reviews")
    assert gone.returncode == 0 and "Route/reviews deleted" in gone.stdout
    assert "config/Route/reviews" not in await stored_keys(etcd_client, prefix)
    missing = cli(server, "get", "Route", "reviews")
    assert missing.returncode == 1 and "no Route named 'reviews'" in missing.stderr
    rest = cli(server, "delete", "-f", str(config))
    assert rest.returncode == 0, rest.stderr
    assert "Route/reviews not found" in rest.stdout and rest.stdout.count(" deleted at ") == 3
    assert await stored_keys(etcd_client, prefix) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            ROUTE.replace("    timeout: 300ms", "    timeout: 300ms\n    timout: 1s"),
            "routes.yaml, document 2 (Route reviews): spec.rules[1].timout: unknown field",
        ),
        (
            ROUTE.replace('"/books/[0-9]+"', '"/books/([0-9]+"'),
            "routes.yaml, document 2 (Route reviews): spec.rules[1].match[0].path.regex: "
            "'/books/([0-9]+' is not a valid regex",
        ),
        (
            ROUTE.replace("weight: 90", "weight: 0").replace("weight: 10", "weight: 0"),
            "routes.yaml, document 2 (Route reviews): spec.rules[1].backends: the weights sum to 0",
        ),
        (
            ROUTE.replace("retryOn: [gateway-error]", "on: [gateway-error]"),
            "routes.yaml, document 2: spec.rules[1].retries.True: a field name must be a string "
            "(YAML 1.1 reads bare on, off, yes and no as booleans",
        ),
    ],
)
async def test_a_bad_file_names_file_document_and_field_and_stores_nothing(
    server: WeftServer,
    tmp_path: Path,
    etcd_client: EtcdClient,
    prefix: str,
    broken: str,
    expected: str,
) -> None:
    # A good document before the bad one: nothing of the file may be stored.
    path = tmp_path / "routes.yaml"
    path.write_text(SUBSETS.split("---")[0] + "---\n" + broken)
    done = cli(server, "apply", "-f", str(path))
    assert done.returncode == 65
    assert expected in done.stderr, done.stderr
    assert await stored_keys(etcd_client, prefix) == []


async def test_the_server_refuses_a_bad_batch_whole_and_checks_against_what_is_stored(
    server: WeftServer, tmp_path: Path, etcd_client: EtcdClient, prefix: str
) -> None:
    first = tmp_path / "route.yaml"
    first.write_text(ROUTE)
    assert cli(server, "apply", "-f", str(first)).returncode == 0

    # Valid on its own (the CLI's check passes), but reviews already has a Route.
    second = ROUTE.replace("metadata: {name: reviews}", "metadata: {name: reviews-two}")
    done = cli(server, "apply", "-f", "-", stdin=SUBSETS + "---\n" + second)
    assert done.returncode == 65
    assert (
        "(stdin), document 4 (Route reviews-two): spec.service: service 'reviews' already "
        "has Route 'reviews'" in done.stderr
    )
    assert await stored_keys(etcd_client, prefix) == ["config/Route/reviews"]

    # Straight over HTTP, every problem of the batch comes back at once.
    resp = httpx.post(
        f"{server.url}/v1/resources",
        json={
            "resources": [
                {
                    "apiVersion": "weft.dev/v1",
                    "kind": "Subset",
                    "metadata": {"name": "Bad_Name"},
                    "spec": {"service": "x"},
                },
                {"kind": "ServiceEntry"},
            ]
        },
        headers={"X-Weft-Token": server.token or ""},
    )
    assert resp.status_code == 400
    problems = resp.json()["error"]["problems"]
    assert (
        "resources[0] (Subset Bad_Name): metadata.name: 'Bad_Name' is not a resource name"
        " (a DNS name: a-z, 0-9, '-', '.')" in problems
    )
    assert "resources[0] (Subset Bad_Name): spec.subset: is required" in problems
    assert (
        "resources[1] (ServiceEntry ?): kind: 'ServiceEntry' is not a kind (Route, "
        "ServiceDefaults, Subset, Gateway, ExternalService)" in problems
    )
    assert "resources[1] (ServiceEntry ?): apiVersion: is required" in problems
    assert await stored_keys(etcd_client, prefix) == ["config/Route/reviews"]

    # Writing needs an operator token; the Consul-style view reads the same record.
    anonymous = httpx.post(f"{server.url}/v1/resources", json={"resources": []})
    assert anonymous.status_code == 403
    consul = httpx.get(
        f"{server.url}/v1/config/Route/reviews", headers={"X-Consul-Token": server.token or ""}
    ).json()
    assert consul["Kind"] == "Route" and consul["Spec"]["service"] == "reviews"
    assert consul["ModifyIndex"] >= consul["CreateIndex"] > 0

    # A Consul-style write goes through the same rules, and a bad one stores nothing either.
    headers = {"X-Consul-Token": server.token or ""}
    entry = {
        "Kind": "Subset",
        "Name": "reviews-v3",
        "Spec": {"service": "reviews", "subset": "v3", "tags": ["v3"]},
    }
    put = httpx.put(f"{server.url}/v1/config", json=entry, headers=headers)
    assert put.status_code == 200 and put.json() is True
    entry["Spec"]["weights"] = 1
    bad = httpx.put(f"{server.url}/v1/config", json={**entry, "Name": "x-v4"}, headers=headers)
    assert bad.status_code == 400 and "spec.weights: unknown field" in bad.text
    assert await stored_keys(etcd_client, prefix) == [
        "config/Route/reviews",
        "config/Subset/reviews-v3",
    ]


async def test_concurrent_applies_never_store_two_routes_for_one_service(
    server: WeftServer, etcd_client: EtcdClient, prefix: str
) -> None:
    import trio

    def route_doc(name: str, service: str) -> dict:
        return {
            "apiVersion": "weft.dev/v1",
            "kind": "Route",
            "metadata": {"name": name},
            "spec": {"service": service, "rules": [{"name": "all"}]},
        }

    headers = {"X-Weft-Token": server.token or ""}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        for round_ in range(5):
            statuses: list[int] = []

            async def apply(name: str, service: str, out: list[int]) -> None:
                resp = await client.post(
                    "/v1/resources", json={"resources": [route_doc(name, service)]}
                )
                out.append(resp.status_code)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(apply, f"a{round_}", f"svc{round_}", statuses)
                nursery.start_soon(apply, f"b{round_}", f"svc{round_}", statuses)
            # one wins; the other is refused by the rules (400) or, if it was checked
            # before the winner landed, by the write's guard (409)
            assert sorted(statuses) in ([200, 400], [200, 409]), statuses
    keys = await stored_keys(etcd_client, prefix)
    assert len(keys) == 5, keys


async def test_a_dry_run_flag_that_is_not_a_boolean_is_refused_and_stores_nothing(
    server: WeftServer, etcd_client: EtcdClient, prefix: str
) -> None:
    # schemathesis sent {"dry_run": {}}: it was read as false and the batch really applied
    # ("no" would have been a dry run).
    doc = yaml.safe_load(ROUTE)
    for bad in ({}, "no", 1, []):
        resp = httpx.post(
            f"{server.url}/v1/resources",
            json={"resources": [doc], "dry_run": bad},
            headers=server.headers(),
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["field"] == "dry_run"
    assert await stored_keys(etcd_client, prefix) == []
