"""Leadership fenced by the lease: duties stop at the lease's deadline even while a keepalive
hangs, and a duty's write carrying a lost lease is refused by etcd."""

from __future__ import annotations

import signal
from functools import partial

import trio

from registry._catalog import Registration
from registry._config import ServerConfig
from registry._leader import Leadership, lead
from registry._model import Instance
from registry.etcd import EtcdClient
from registry.server import RegistryServer
from tests.harness import EtcdCluster, async_wait_until

TTL = 3


async def test_duties_stop_at_the_lease_deadline_while_the_keepalive_hangs(tmp_path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd")  # its own etcd: this test freezes it
    cluster.start()
    member = cluster.members[0]
    try:
        # A client timeout far past the TTL: a keepalive to a frozen etcd hangs that long.
        async with EtcdClient(cluster.endpoints, timeout=30) as client:
            running = trio.Event()
            stopped_at: list[float] = []

            async def duty(leadership: Leadership) -> None:
                running.set()
                try:
                    await trio.sleep_forever()
                finally:
                    stopped_at.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(lead, client, "/fence/leader", "me", duty, ttl=TTL))
                with trio.fail_after(10):
                    await running.wait()
                frozen_at = trio.current_time()
                assert member.proc is not None
                member.proc.signal(signal.SIGSTOP)
                try:
                    await async_wait_until(
                        lambda: _true(bool(stopped_at)), timeout=TTL + 10, what="duty stopped"
                    )
                finally:
                    member.proc.signal(signal.SIGCONT)
                nursery.cancel_scope.cancel()
        # The lease was granted before `frozen_at`, so its deadline is at most TTL after it.
        assert stopped_at[0] - frozen_at <= TTL + 0.5, stopped_at[0] - frozen_at
    finally:
        cluster.stop()


async def _true(value: bool) -> bool:
    return value


async def test_a_duty_write_guarded_by_a_lost_lease_changes_nothing(etcd, prefix) -> None:
    config = ServerConfig(
        listen="127.0.0.1:0", etcd_endpoints=tuple(etcd.endpoints), etcd_prefix=prefix
    )
    server = RegistryServer(config, extensions=[])
    inst = Instance(service="web", id="web-1", node="n1", port=80)
    key = server.keys.instance("web", "n1", "web-1")
    async with EtcdClient(etcd.endpoints) as client, trio.open_nursery() as nursery:
        await nursery.start(server.sync.run)
        nursery.start_soon(server.batcher.run)
        await server.catalog.register(Registration(inst))
        leader_key = server.keys.leader("health")
        old_lease = await client.lease_grant(30)
        new_lease = await client.lease_grant(30)
        # Someone else holds the leadership now (our lease `old_lease` lost it).
        await client.put(leader_key, b"successor", lease=new_lease)
        await server.catalog.deregister(inst, guard=Leadership(leader_key, old_lease).guard())
        assert await client.get(key) is not None, "a fenced-off leader removed an instance"
        await server.catalog.deregister(inst, guard=Leadership(leader_key, new_lease).guard())
        assert await client.get(key) is None
        for lease in (old_lease, new_lease):
            await client.lease_revoke(lease)
        nursery.cancel_scope.cancel()
    await server.etcd.aclose()
