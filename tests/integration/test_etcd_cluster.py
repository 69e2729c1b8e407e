"""registry.etcd against a three-member etcd cluster and against etcd with TLS client certs."""

from __future__ import annotations

import trio
import trustme

from registry.etcd import EtcdClient, EtcdTLS
from tests.harness import EtcdCluster, free_port, spawn, wait_until
from tests.harness._etcd import etcd_binary


async def test_watch_and_writes_survive_the_loss_of_a_member(tmp_path) -> None:
    cluster = EtcdCluster(tmp_path / "cluster", size=3)
    cluster.start()
    try:
        prefix = "/failover/"
        async with EtcdClient(cluster.endpoints, timeout=2) as client:
            start = (await client.range(prefix, prefix=True)).revision + 1
            seen: list[str] = []
            async with client.watch(prefix, start_revision=start, liveness_interval=0.5) as events:
                await client.put(prefix + "before", b"1")
                with trio.fail_after(5):
                    seen.extend(e.kv.key for e in (await events.receive()).events)
                # Kill the member the client (and so the watch) is talking to.
                victim = cluster.members[client._current]
                victim.kill()
                for i in range(3):
                    await client.put(prefix + f"after{i}", b"x")
                with trio.fail_after(15):
                    async for batch in events:
                        seen.extend(e.kv.key for e in batch.events)
                        if len(seen) >= 4:
                            break
            assert seen == [prefix + "before"] + [prefix + f"after{i}" for i in range(3)]
    finally:
        cluster.stop()


async def test_tls_client_certificate(tmp_path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("weft-client")
    paths = {}
    for name, blob in {
        "ca.pem": ca.cert_pem.bytes(),
        "server.pem": server.private_key_and_cert_chain_pem.bytes(),
        "client.pem": client_cert.cert_chain_pems[0].bytes(),
        "client.key": client_cert.private_key_pem.bytes(),
    }.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(blob)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = spawn(
        [
            etcd_binary(),
            "--data-dir",
            str(tmp_path / "data"),
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{free_port()}",
            "--cert-file",
            str(paths["server.pem"]),
            "--key-file",
            str(paths["server.pem"]),
            "--client-cert-auth",
            "--trusted-ca-file",
            str(paths["ca.pem"]),
            "--log-level",
            "warn",
        ],
        log_path=tmp_path / "etcd.log",
    )
    try:
        tls = EtcdTLS(str(paths["ca.pem"]), str(paths["client.pem"]), str(paths["client.key"]))
        async with EtcdClient([url], tls=tls) as client:

            async def up() -> bool:
                return bool(await client.status())

            from tests.harness import async_wait_until

            await async_wait_until(up, timeout=20, what="TLS etcd")
            await client.put("/tls/k", b"v")
            assert (await client.get("/tls/k")).value == b"v"
        # Without a client certificate etcd refuses the handshake.
        from registry.etcd import EtcdUnavailable

        async with EtcdClient([url], tls=EtcdTLS(str(paths["ca.pem"])), timeout=2) as anonymous:
            try:
                await anonymous.get("/tls/k")
            except EtcdUnavailable as exc:
                assert url in str(exc)
            else:
                raise AssertionError("etcd accepted a client without a certificate")
    finally:
        proc.stop()
        wait_until(lambda: not proc.alive(), timeout=5)
