"""Intentions through the whole mesh: real server (intention default deny), real etcd, real
agents, real sidecars and real apps. `web` on vm-a calls `api` on vm-b through both sidecars;
an intention written with `weft intention` changes what api's sidecar lets through within 2 s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ca import KeyEncryptionKey
from tests.harness import free_port, wait_until

from .test_agent_mesh import TD, Mesh
from .test_cli_traffic import cli

pytestmark = pytest.mark.timeout(150)


@dataclass
class World:
    mesh: Mesh
    upstream: int  # web's local port for api
    admin: str  # api's sidecar admin address


@pytest.fixture
def world(start_server, tmp_path: Path) -> Iterator[World]:
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server(
        "--ca-kek-file", str(kek), "--ca-allow-short-leaves", "--intention-default", "deny"
    )
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    mesh = Mesh(server, tmp_path)
    try:
        api = mesh.agent("vm-b")
        api.define(
            "api",
            f'name = "api"\nport = {mesh.app("api")}\n[sidecar]\nport = {free_port()}\n',
        )
        api.start()
        upstream = free_port()
        web = mesh.agent("vm-a")
        web.define(
            "web",
            f'name = "web"\nport = {mesh.app("web")}\n[sidecar]\nport = {free_port()}\n'
            f'[[upstreams]]\nservice = "api"\nlocal_port = {upstream}\n',
        )
        web.start()
        admin = api.status()["services"][0]["sidecar"]["proxy"]["admin"]
        world = World(mesh, upstream, admin)
        # The mesh default is deny: web reaches api's sidecar (mTLS works) and is refused there.
        wait_until(
            lambda: status(world, "/x") == 403,
            timeout=60,
            what="web's sidecar to reach api's sidecar",
        )
        yield world
    finally:
        mesh.close()


def request(world: World, path: str, method: str = "GET") -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=5) as client:
        return client.request(method, f"http://127.0.0.1:{world.upstream}{path}")


def status(world: World, path: str, method: str = "GET") -> int:
    try:
        return request(world, path, method).status_code
    except httpx.HTTPError:
        return 0


def intention(world: World, *args: str) -> None:
    done = cli(world.mesh.server, "intention", *args)
    assert done.returncode == 0, done.stderr


def within_two_seconds(world: World, path: str, want: int, method: str = "GET") -> None:
    start = time.monotonic()
    wait_until(
        lambda: status(world, path, method) == want,
        timeout=10,
        interval=0.05,
        what=f"{method} {path} to answer {want}",
    )
    assert time.monotonic() - start < 2.0


def test_denying_web_to_api_refuses_the_next_requests_with_403_within_two_seconds(
    world: World,
) -> None:
    refused = request(world, "/x")
    assert refused.status_code == 403
    assert "the mesh default denies" in refused.headers["x-weft-denied"]

    intention(world, "create", "web", "api")
    within_two_seconds(world, "/x", 200)
    assert request(world, "/x").json()["service"] == "api"

    intention(world, "create", "--deny", "web", "api")  # replaces the allow
    within_two_seconds(world, "/x", 403)
    denied = request(world, "/x")
    assert "spiffe://mesh.test/ns/default/svc/web may not call api" in denied.text
    assert "denies" in denied.headers["x-weft-denied"]
    listed = cli(world.mesh.server, "intention", "list", "-o", "json")
    assert [(i["SourceName"], i["Action"]) for i in json.loads(listed.stdout)] == [("web", "deny")]
    seen = world.mesh.agents[0].status()["intentions"]  # api's agent
    assert (seen["default"], seen["count"], seen["rejected"]) == ("deny", 1, {})
    check = cli(world.mesh.server, "intention", "check", "web", "api")
    assert (check.returncode, check.stdout.strip()) == (2, "Denied")

    # A wildcard allow loses to the exact deny (precedence 8 < 9) ...
    intention(world, "create", "*", "api")
    assert status(world, "/x") == 403
    # ... and takes over once the exact one is deleted.
    intention(world, "delete", "web", "api")
    within_two_seconds(world, "/x", 200)


def test_an_l7_permission_lets_only_get_public_through(world: World, tmp_path: Path) -> None:
    perms = tmp_path / "perms.json"
    perms.write_text(
        json.dumps([{"Action": "allow", "HTTP": {"PathPrefix": "/public/", "Methods": ["GET"]}}])
    )
    intention(world, "create", "web", "api", "--permissions", str(perms))
    within_two_seconds(world, "/public/a", 200)
    assert request(world, "/public/b/c").json()["path"] == "/public/b/c"
    for method, path in (("GET", "/private"), ("POST", "/public/a"), ("GET", "/public/../admin")):
        refused = request(world, path, method)
        assert refused.status_code == 403, (method, path)
        assert "no permission of intention" in refused.headers["x-weft-denied"]
    snapshot = httpx.get(f"http://{world.admin}/config").json()["snapshot"]
    assert snapshot["schema"] == "weft.proxy.snapshot/v3"
    assert snapshot["intentions"]["rules"][0]["permissions"] == [
        {"action": "allow", "http": {"path_prefix": "/public/", "methods": ["GET"]}}
    ]
