"""Group commit keeps each key's writes in the order they were submitted, with four
transactions in flight at once (real etcd; the key's history read back through a watch)."""

from __future__ import annotations

import trio

from registry._batcher import Write, WriteBatcher
from registry.etcd import EtcdClient, Put


async def test_writes_to_one_key_land_in_submission_order(etcd, prefix) -> None:
    hot = prefix + "hot"
    count = 200
    async with EtcdClient(etcd.endpoints) as client:
        start = (await client.range(hot)).revision + 1
        batcher = WriteBatcher(client, max_in_flight=4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            writes = []
            for i in range(count):
                # Other keys between them, so batches form and several are in flight.
                for op in (Put(hot, str(i).encode()), Put(f"{prefix}cold/{i}", b"x")):
                    write = Write([], [op])
                    batcher._send.send_nowait(write)  # submitted in exactly this order
                    writes.append(write)
            with trio.fail_after(30):
                for write in writes:
                    await write.done.wait()
            assert all(w.error is None for w in writes)
            history: list[int] = []
            async with client.watch(hot, prefix=False, start_revision=start) as batches:
                with trio.fail_after(10):
                    async for batch in batches:
                        history.extend(int(e.kv.value) for e in batch.events)
                        if len(history) >= count:
                            break
            nursery.cancel_scope.cancel()
        await client.delete(prefix, prefix=True)
    assert history == list(range(count))
    assert batcher.transactions < 2 * count  # the cold writes were grouped
