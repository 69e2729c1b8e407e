"""`check_allow_networks`: server-run checks reach only the instance's own address or what the
operator allows, so a registration cannot make the server read cloud metadata or its loopback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from registry._keys import Keys
from registry._model import Check, Instance, Status, encode_check, encode_instance
from registry.etcd import EtcdClient
from tests.harness import WeftServer, async_wait_until

REGISTER = "/v1/agent/service/register"
METADATA = "169.254.169.254"


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[int]:
    """A real HTTP app on loopback that answers with the Host header it was sent."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def register(server: WeftServer, body: dict) -> httpx.Response:
    return httpx.put(server.url + REGISTER, json=body, headers=server.headers())


REFUSED = [
    # cloud metadata, by URL and by the instance's own (link-local) address
    ({"Check": {"HTTP": f"http://{METADATA}/latest/meta-data/", "Interval": "1s"}}, "Check.http"),
    (
        {"Address": METADATA, "Check": {"HTTP": f"http://{METADATA}/", "Interval": "1s"}},
        "Check.http",
    ),
    ({"Checks": [{"TTL": "10s"}, {"TCP": f"{METADATA}:80", "Interval": "1s"}]}, "Checks[1].tcp"),
    # somebody else's address
    ({"Check": {"HTTP": "http://10.1.2.3:8080/health", "Interval": "1s"}}, "Check.http"),
]


def test_a_check_the_server_may_not_reach_is_refused_at_registration(server: WeftServer) -> None:
    for body, field in REFUSED:
        resp = register(server, {"Name": "web", "Port": 80, **body})
        assert resp.status_code == 400, (body, resp.text)
        assert resp.text.startswith(field), (body, resp.text)
        assert "check_allow_networks" in resp.text
    services = httpx.get(server.url + "/v1/catalog/services", headers=server.headers()).json()
    assert "web" not in services


def test_check_allow_networks_lets_the_operator_allow_more(start_server) -> None:
    server = start_server("--check-allow-networks", "10.0.0.0/8,192.0.2.0/24")
    for url in ("http://10.1.2.3:8080/health", "http://192.0.2.7/"):
        resp = register(
            server, {"Name": "web", "Port": 80, "Check": {"HTTP": url, "Interval": "10s"}}
        )
        assert resp.status_code == 200, resp.text
    still = register(
        server,
        {"Name": "web", "Port": 80, "Check": {"HTTP": f"http://{METADATA}/", "Interval": "10s"}},
    )
    assert still.status_code == 400


async def test_probes_recheck_the_address_and_connect_to_the_one_they_checked(
    server: WeftServer, etcd, prefix: str, app: int
) -> None:
    # Registered from this host: its own loopback app is checked, by name, with its Host kept.
    resp = register(
        server,
        {
            "Name": "local",
            "Port": app,
            "Check": {"HTTP": f"http://localhost:{app}/", "Interval": "1s"},
        },
    )
    assert resp.status_code == 200, resp.text
    # Written straight into etcd (as an old server stored them): a registration from another
    # host pointing the server at metadata, and at the server's own loopback by name.
    keys = Keys(prefix)
    async with EtcdClient(etcd.endpoints) as client:
        remote = Instance(
            service="legacy", id="legacy-1", node="vm-9", port=80, node_address="10.9.9.9"
        )
        await client.put(keys.instance("legacy", "vm-9", "legacy-1"), encode_instance(remote))
        for check_id, fields in {
            "metadata": {"type": "http", "http": f"http://{METADATA}/latest/meta-data/"},
            "loopback-by-name": {"type": "http", "http": f"http://localhost:{app}/"},
            "loopback-tcp": {"type": "tcp", "tcp": f"127.0.0.1:{app}"},
        }.items():
            record = Check(
                id=check_id,
                node="vm-9",
                service="legacy",
                instance="legacy-1",
                status=Status.PASSING,
                interval=1.0,
                runner="server",
                **fields,
            )
            await client.put(
                keys.check("legacy", "vm-9", "legacy-1", check_id), encode_check(record)
            )

    async with httpx.AsyncClient(headers=server.headers(), timeout=10) as http_client:

        async def settled() -> dict[str, dict] | None:
            seen = {}
            for name in ("local", "legacy"):
                resp = await http_client.get(server.url + f"/v1/health/checks/{name}")
                seen.update({c["CheckID"]: c for c in resp.json()})
            done = (
                seen.get("service:local", {}).get("Status") == "passing"
                and sum(1 for c in seen.values() if c["Status"] == "critical") == 3
            )
            return seen if done else None

        seen = await async_wait_until(settled, timeout=20, what="the probes to settle")
    assert f"host=localhost:{app}" in seen["service:local"]["Output"]
    for check_id in ("metadata", "loopback-by-name", "loopback-tcp"):
        output = seen[check_id]["Output"]
        assert "refused by check_allow_networks" in output, (check_id, output)
        assert "host=" not in output  # the app was never reached
    assert METADATA in seen["metadata"]["Output"]
