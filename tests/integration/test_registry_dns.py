"""The DNS interface of a real `weft server`, asked by `dig` (bind9-dnsutils) and raw sockets."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import consul
import httpx
import pytest

from tests.harness import WeftServer, wait_until


@pytest.fixture(autouse=True)
def _dig_installed() -> None:
    # A failure, not a skip: a green run must never hide a missing install step.
    if shutil.which("dig") is None:
        pytest.fail("dig missing (Debian bind9-dnsutils): run scripts/bootstrap test")


def dig(server: WeftServer, *args: str) -> str:
    host, _, port = server.dns.rpartition(":")
    result = subprocess.run(
        ["dig", f"@{host}", "-p", port, "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def short(server: WeftServer, *args: str) -> list[str]:
    return sorted(dig(server, "+short", *args).split("\n")[:-1])


def client(server: WeftServer) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=server.token)


def test_dig_answers_a_and_srv_with_passing_instances_only(server: WeftServer) -> None:
    c = client(server)
    for i, state in enumerate(["pass", "pass", "fail"], start=1):
        c.agent.service.register(
            "web",
            service_id=f"web-{i}",
            address=f"127.0.0.{i + 10}",
            port=8000 + i,
            tags=["blue"] if i == 1 else [],
            check=consul.Check.ttl("60s"),
        )
        getattr(c.agent.check, f"ttl_{state}")(f"service:web-{i}")
    assert short(server, "web.service.consul", "A") == ["127.0.0.11", "127.0.0.12"]
    srv = short(server, "web.service.consul", "SRV")
    assert srv == ["1 1 8001 7f00000b.addr.dc1.consul.", "1 1 8002 7f00000c.addr.dc1.consul."]
    assert short(server, "_web._tcp.service.consul", "SRV") == srv
    assert short(server, "blue.web.service.dc1.consul", "A") == ["127.0.0.11"]
    full = dig(server, "web.service.consul", "SRV")
    assert "flags: qr aa rd;" in full  # authoritative, no recursion offered
    assert "7f00000b.addr.dc1.consul. 0\tIN\tA\t127.0.0.11" in full  # glue for the targets


def test_a_failing_instance_leaves_the_answer_within_its_check_interval(
    server: WeftServer,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    c = client(server)
    c.agent.service.register(
        "db",
        service_id="db-1",
        address="127.0.0.21",
        port=port,
        check=consul.Check.tcp("127.0.0.1", port, "1s", timeout="1s"),
    )
    c.agent.service.register("db", service_id="db-2", address="127.0.0.22", port=5432)
    wait_until(
        lambda: short(server, "db.service.consul") == ["127.0.0.21", "127.0.0.22"],
        timeout=15,
        what="the TCP check to pass",
    )
    listener.close()
    wait_until(
        lambda: short(server, "db.service.consul") == ["127.0.0.22"],
        timeout=5,  # a 1 s interval, a 1 s timeout, and the server's reap tick
        what="the failing instance to leave the DNS answer",
    )


def test_a_200_instance_answer_truncates_over_udp_and_completes_over_tcp(
    server: WeftServer,
) -> None:
    upserts = [
        {
            "service": "big",
            "id": f"big-{i}",
            "port": 9000,
            "address": f"10.9.{i // 200}.{i % 200 + 1}",
        }
        for i in range(200)
    ]
    answer = httpx.post(
        server.url + "/v1/registry/batch", json={"upserts": upserts}, headers=server.headers()
    )
    assert answer.status_code == 200, answer.text
    udp = dig(server, "+ignore", "+noedns", "big.service.consul", "A")
    assert " tc" in udp.split("flags:")[1].split(";")[0]
    assert 0 < udp.count("\tIN\tA\t") < 200
    tcp = dig(server, "+tcp", "big.service.consul", "SRV")
    assert " tc" not in tcp.split("flags:")[1].split(";")[0]
    assert tcp.count("\tIN\tSRV\t") == 200
    # dig's default: it sees TC over UDP and retries over TCP by itself.
    assert len(short(server, "big.service.consul", "A")) == 200


def test_ttls_warning_instances_sidecars_nodes_and_ipv6_as_configured(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(
        "--dns-service-ttl", "30s", "--dns-node-ttl", "1m", "--dns-include-warning"
    )
    c = client(server)
    c.agent.service.register(
        "api", service_id="api-1", address="127.0.0.51", port=80, check=consul.Check.ttl("60s")
    )
    c.agent.check.ttl_warn("service:api-1")
    upserts = [
        {
            "service": "api",
            "id": "api-2",
            "node": "host-b",
            "node_address": "127.0.0.52",
            "port": 81,
            "sidecar_port": 21000,
        },
        {"service": "api", "id": "api-6", "address": "2001:db8::6", "port": 82},
    ]
    answer = httpx.post(
        server.url + "/v1/registry/batch", json={"upserts": upserts}, headers=server.headers()
    )
    assert answer.status_code == 200, answer.text
    # --dns-include-warning: the warning instance answers too; --dns-service-ttl: 30 s.
    full = dig(server, "api.service.consul", "A")
    assert "api.service.consul.\t30\tIN\tA\t127.0.0.51" in full
    assert short(server, "api.service.consul") == ["127.0.0.51", "127.0.0.52"]
    assert short(server, "api.service.consul", "AAAA") == ["2001:db8::6"]
    # The sidecars: only api-2 has one, at its node's address.
    assert short(server, "api.connect.consul", "SRV") == ["1 1 21000 7f000034.addr.dc1.consul."]
    # A node's address, with the node TTL (60 s).
    assert "host-b.node.consul.\t60\tIN\tA\t127.0.0.52" in dig(server, "host-b.node.consul")


def test_unknown_names_are_nxdomain_and_other_domains_refused(server: WeftServer) -> None:
    missing = dig(server, "nope.service.consul", "A")
    assert "status: NXDOMAIN" in missing
    assert "consul.\t\t\t0\tIN\tSOA\tns.consul. hostmaster.consul." in missing
    assert "status: REFUSED" in dig(server, "example.com", "A")
    edns = dig(server, "+bufsize=1232", "nope.service.consul")
    assert "; EDNS: version: 0" in edns and "udp: 4096" in edns


def test_garbage_and_stalled_clients_do_not_stop_the_dns_server(server: WeftServer) -> None:
    client(server).agent.service.register("ok", address="127.0.0.31", port=1)
    host, _, port = server.dns.rpartition(":")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in (b"", b"\x00", b"\xff" * 12, b"\x12\x34" + b"\x01\x00" + b"\xff" * 500):
        udp.sendto(junk, (host, int(port)))
    udp.close()
    stalled = []
    for size in (b"\xff\xff", b"\x00\x40abc", b"\x00"):
        conn = socket.create_connection((host, int(port)))
        conn.sendall(size)  # a length, then (almost) nothing: the server must not wait on it
        stalled.append(conn)
    reset = socket.create_connection((host, int(port)))
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.sendall(b"\x00\x20")
    reset.close()
    try:
        assert short(server, "ok.service.consul") == ["127.0.0.31"]
        assert short(server, "+tcp", "ok.service.consul") == ["127.0.0.31"]
    finally:
        for conn in stalled:
            conn.close()
    assert "Traceback" not in server.log()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_flood_of_hostile_packets_leaves_the_server_answering_in_bounded_memory(
    server: WeftServer,
) -> None:
    client(server).agent.service.register("ok", address="127.0.0.41", port=1)
    host, _, port_text = server.dns.rpartition(":")
    target = (host, int(port_text))
    assert server.proc is not None
    assert short(server, "ok.service.consul") == ["127.0.0.41"]
    rss_before = _rss_mb(server.proc.pid)
    header = b"\xbe\xef\x01\x00\x00\x01" + b"\x00" * 6
    valid = dns_query("ok.service.consul")
    hostile = [
        header + b"\xc0\x0c\x00\x01\x00\x01",  # a compression loop
        header + b"\x3f" + b"a" * 63,  # a name cut short
        valid[:20],  # a truncated packet
        valid[:2] + b"\x81\x80" + valid[4:],  # a response: never answered, never bounced
        b"\x00" * 11,  # a runt
        valid,
    ]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    held: list[socket.socket] = []
    started = time.monotonic()
    try:
        for i in range(6000):  # never reading a reply: the server must not queue them
            try:
                udp.sendto(hostile[i % len(hostile)], target)
            except BlockingIOError:
                time.sleep(0.001)
        for i in range(300):  # past the 256-connection cap, each promising 65,535 bytes
            conn = socket.create_connection(target)
            conn.sendall(b"\xff\xff" + b"\x00" * 100 if i % 2 else b"\x00\x12" + hostile[0])
            held.append(conn)
        assert time.monotonic() - started < 30  # the flood itself is bounded
        assert short(server, "ok.service.consul") == ["127.0.0.41"]
        grown = _rss_mb(server.proc.pid) - rss_before
        assert grown < 25, f"RSS grew by {grown:.0f} MB under the flood"
    finally:
        udp.close()
        for conn in held:
            conn.close()
    assert server.proc.alive()
    assert short(server, "+tcp", "ok.service.consul") == ["127.0.0.41"]
    assert "Traceback" not in server.log()


def dns_query(name: str) -> bytes:
    import dns.message

    return dns.message.make_query(name, "A").to_wire()


async def test_slow_tcp_clients_are_cut_off_and_connections_are_capped() -> None:
    import trio
    import trio.testing

    from registry._dns import DNSOptions
    from registry._dns_server import DNSServer
    from registry._keys import Keys
    from registry._mirror import Mirror

    mirror = Mirror(Keys("/t/"))
    mirror.load([], revision=1)
    capped = DNSServer(mirror, DNSOptions(), max_connections=2, message_timeout=60)
    hasty = DNSServer(mirror, DNSOptions(), message_timeout=0.5)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(capped.serve, "127.0.0.1", 0)
        idle = [await trio.open_tcp_stream(host, port) for _ in range(2)]
        over = await trio.open_tcp_stream(host, port)
        with trio.fail_after(5):
            assert await over.receive_some(10) == b""  # two are open: the third is closed
        await trio.testing.wait_all_tasks_blocked()
        assert capped.connections == 2  # the idle ones are still held (60 s to send a query)
        for stream in idle:
            await stream.aclose()

        host, port = await nursery.start(hasty.serve, "127.0.0.1", 0)
        trickler = await trio.open_tcp_stream(host, port)
        await trickler.send_all(b"\xff\xff" + b"x" * 100)  # promises 65,535 bytes, sends 100
        with trio.fail_after(5):
            assert await trickler.receive_some(10) == b""  # dropped after message_timeout
        await trio.testing.wait_all_tasks_blocked()
        assert hasty.connections == 0
        nursery.cancel_scope.cancel()
