"""DNS on the agent (`dns_listen`): the host asks its agent, the agent relays to a server's
DNS interface. Shown with `dig` against a real agent and a real server."""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import pytest
import trio

from registry.dns import DNSRelay
from tests.harness import WeftAgent, WeftServer, wait_until


@pytest.fixture(autouse=True)
def _dig_installed() -> None:
    if shutil.which("dig") is None:
        pytest.fail("dig missing (Debian bind9-dnsutils): run scripts/bootstrap test")


def dig(address: str, *args: str) -> str:
    host, _, port = address.rpartition(":")
    result = subprocess.run(
        ["dig", f"@{host}", "-p", port, "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def short(address: str, *args: str) -> list[str]:
    return sorted(dig(address, "+short", *args).split("\n")[:-1])


def _dead_port() -> int:
    """A port nothing listens on, over UDP or TCP (the relay's first, unanswering server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_agent_answers_dns_for_its_host_through_the_servers(
    server: WeftServer, tmp_path
) -> None:
    token = httpx.post(
        server.url + "/v1/tokens",
        json={"role": "agent", "node": "vm-dns"},
        headers=server.headers(),
    ).json()["secret"]
    app = socket.create_server(("127.0.0.1", 0))
    port = app.getsockname()[1]
    agent = WeftAgent(
        server.url,
        token,
        tmp_path,
        node="vm-dns",
        extra={
            "dns_listen": "127.0.0.1:0",
            "dns_servers": [f"127.0.0.1:{_dead_port()}", server.dns],  # the first is down
        },
    )
    agent.define(
        "cache",
        f'name = "cache"\nport = {port}\nprotocol = "tcp"\n'
        f'[[checks]]\ntcp = "127.0.0.1:{port}"\ninterval = "1s"\n',
    )
    try:
        agent.start()
        assert agent.dns
        wait_until(
            lambda: short(agent.dns, "cache.service.consul") == ["127.0.0.1"],
            timeout=15,
            what="the agent's DNS to answer the passing instance",
        )
        srv = short(agent.dns, "cache.service.consul", "SRV")
        assert srv == [f"1 1 {port} 7f000001.addr.dc1.consul."]
        assert short(agent.dns, "+tcp", "vm-dns.node.consul") == ["127.0.0.1"]
        # The agent's declared node address, the same in every HTTP view as in DNS.
        views = _node_addresses(server, "vm-dns", "cache")
        assert set(views.values()) == {"127.0.0.1"}, views
        missing = dig(agent.dns, "nope.service.consul")
        assert "status: NXDOMAIN" in missing and "IN\tSOA\tns.consul." in missing
        assert "status: REFUSED" in dig(agent.dns, "example.com")
        upserts = [
            {"service": "big", "id": f"big-{i}", "port": 1, "address": f"10.8.{i // 200}.{i + 1}"}
            for i in range(200)
        ]
        answer = httpx.post(
            server.url + "/v1/registry/batch",
            json={"upserts": upserts},
            headers=server.headers(),
        )
        assert answer.status_code == 200, answer.text
        udp = dig(agent.dns, "+ignore", "+noedns", "big.service.consul")
        assert " tc" in udp.split("flags:")[1].split(";")[0]  # truncated over UDP...
        assert len(short(agent.dns, "big.service.consul")) == 200  # ...dig retries over TCP
        app.close()
        wait_until(
            lambda: short(agent.dns, "cache.service.consul") == [],
            timeout=5,
            what="the failing instance to leave the agent's answer",
        )
    finally:
        agent.stop()
        app.close()
    assert "Traceback" not in agent.log()


def _node_addresses(server: WeftServer, node: str, service: str) -> dict[str, str]:
    def get(path: str) -> object:
        answer = httpx.get(server.url + path, headers=server.headers())
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    nodes = {n["Node"]: n["Address"] for n in get("/v1/catalog/nodes")}  # type: ignore[attr-defined]
    members = {m["Name"]: m["Addr"] for m in get("/v1/agent/members")}  # type: ignore[attr-defined]
    return {
        "catalog/nodes": nodes[node],
        "catalog/node": get(f"/v1/catalog/node/{node}")["Node"]["Address"],  # type: ignore[index]
        "catalog/service": get(f"/v1/catalog/service/{service}")[0]["Address"],  # type: ignore[index]
        "health/service": get(f"/v1/health/service/{service}")[0]["Node"]["Address"],  # type: ignore[index]
        "agent/members": members[node],
    }


async def test_the_relay_ignores_forged_replies_and_says_servfail_when_no_server_answers() -> None:
    import dns.message
    import dns.rcode

    upstream = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await upstream.bind(("127.0.0.1", 0))
    relay = DNSRelay([upstream.getsockname()], upstream_timeout=1.0)
    query = dns.message.make_query("web.service.consul", "A")

    async def forging_server() -> None:
        wire, peer = await upstream.recvfrom(512)
        forged = bytearray(dns.message.make_response(dns.message.from_wire(wire)).to_wire())
        forged[0] ^= 0xFF  # another ID: not the answer to this query
        await upstream.sendto(bytes(forged), peer)
        await upstream.sendto(dns.message.make_response(query).to_wire(), peer)

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(relay.serve, "127.0.0.1", 0)
        nursery.start_soon(forging_server)
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await client.connect((host, port))
        with trio.fail_after(5):
            await client.send(query.to_wire())
            reply = dns.message.from_wire(await client.recv(512))
        assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR
        # Now nobody answers: SERVFAIL within the upstream timeout, with the query's ID.
        with trio.fail_after(5):
            await client.send(query.to_wire())
            wire = await client.recv(512)
        assert wire[:2] == query.to_wire()[:2] and wire[3] & 0x0F == dns.rcode.SERVFAIL
        client.close()
        upstream.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"dns_listen": "8600"}, "dns_listen"),
        ({"dns_listen": "127.0.0.1:86000"}, "dns_listen"),
        ({"dns_listen": "127.0.0.1:0", "dns_servers": ("10.0.0.1",)}, "dns_servers"),
    ],
)
def test_bad_dns_settings_name_the_field(settings: dict[str, object], field: str) -> None:
    from agent._config import AgentConfig
    from agent._errors import ConfigError

    with pytest.raises(ConfigError) as info:
        AgentConfig(**settings).validate()  # type: ignore[arg-type]
    assert info.value.field == field
    assert AgentConfig(dns_listen="127.0.0.1:8600").dns_upstreams() == [("127.0.0.1", 8600)]
