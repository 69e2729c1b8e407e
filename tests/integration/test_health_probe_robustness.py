"""The leader's prober against malformed checks: registering one is a 400 naming the field;
one already in etcd (written by an older version, which accepted them) becomes `critical`
with the reason in its output, and the server stays leader and keeps expiring TTLs on time.
On main each of these raised out of the probe and crash-looped every server in turn."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from registry._keys import Keys
from registry._model import Check, Instance, Status, encode_check, encode_instance
from registry.etcd import EtcdClient
from tests.harness import WeftServer, async_wait_until, etcd_state

LONG_LABEL = "a" * 64
REGISTER = "/v1/agent/service/register"

MALFORMED = {
    # check id: (how it is stored, the words its output must carry)
    "stray-colon": ({"type": "http", "http": "http://h:1:/"}, "could not run"),
    "non-ascii-header": (
        {"type": "http", "http": "http://127.0.0.1:9/", "header": {"X-A": ("é",)}},
        "could not run",
    ),
    "nan-timeout": ({"type": "http", "http": "http://127.0.0.1:9/", "timeout": math.nan}, "HTTP"),
    "long-label": ({"type": "http", "http": f"http://{LONG_LABEL}.example/"}, "could not run"),
    "tcp-long-label": ({"type": "tcp", "tcp": f"{LONG_LABEL}.example:80"}, "could not run"),
    "tcp-stray-colon": ({"type": "tcp", "tcp": "h:1:"}, "could not run"),
}


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"HTTP": "http://h:1:/", "Interval": "1s"}, "Check.http"),
        ({"HTTP": "http://h/", "Interval": "1s", "Header": {"X-A": ["é"]}}, "Check.header.X-A"),
        ({"HTTP": "http://h/", "Interval": "1s", "Header": {"X-A": ["1\r\nX: 2"]}}, "Check.header"),
        ({"HTTP": "http://h/", "Interval": "1s", "Timeout": "NaN"}, "Check.Timeout"),
        ({"HTTP": f"http://{LONG_LABEL}.example/", "Interval": "1s"}, "Check.http"),
        ({"HTTP": f"http://{'a.' * 130}b/", "Interval": "1s"}, "Check.http"),
        ({"TCP": f"{LONG_LABEL}:80", "Interval": "1s"}, "Check.tcp"),
        ({"TCP": "h:1:", "Interval": "1s"}, "Check.tcp"),
        ({"TCP": "h:70000", "Interval": "1s"}, "Check.tcp"),
        ({"TCP": "h:80", "Interval": "inf"}, "Check.Interval"),
    ],
)
async def test_registering_a_check_the_prober_cannot_run_is_400_naming_the_field(
    server: WeftServer, etcd, prefix, check, field
) -> None:
    before = await etcd_state(etcd, prefix)
    async with httpx.AsyncClient(headers=server.headers()) as http:
        resp = await http.put(
            server.url + REGISTER, json={"Name": "web", "Port": 80, "Check": check}
        )
    assert resp.status_code == 400, resp.text
    assert resp.text.startswith(field), resp.text
    assert await etcd_state(etcd, prefix) == before


async def test_malformed_stored_checks_turn_critical_and_the_leader_lives_on(
    server: WeftServer, etcd, prefix
) -> None:
    keys = Keys(prefix)
    async with httpx.AsyncClient(headers=server.headers(), timeout=10) as http:
        # A healthy TTL check next to the broken ones: it must still expire on time.
        resp = await http.put(
            server.url + REGISTER,
            json={"Name": "canary", "Port": 81, "Check": {"TTL": "2s"}},
        )
        assert resp.status_code == 200, resp.text
        resp = await http.put(server.url + "/v1/agent/check/pass/service:canary")
        assert resp.status_code == 200, resp.text

        async with EtcdClient(etcd.endpoints) as client:
            leader = await client.get(keys.leader("health"))
            assert leader is not None, "the server should lead the health duty"
            node = "old-node"
            await client.put(
                keys.instance("legacy", node, "legacy-1"),
                # registered from this host, as a local client would: its loopback checks run
                encode_instance(
                    Instance(
                        service="legacy",
                        id="legacy-1",
                        node=node,
                        port=80,
                        node_address="127.0.0.1",
                    )
                ),
            )
            for check_id, (fields, _) in MALFORMED.items():
                record = Check(
                    id=check_id,
                    node=node,
                    service="legacy",
                    instance="legacy-1",
                    status=Status.PASSING,
                    interval=1.0,
                    runner="server",
                    **fields,
                )
                # json.dumps writes NaN as the bare literal, as an older server stored it.
                await client.put(
                    keys.check("legacy", node, "legacy-1", check_id), encode_check(record)
                )

            async def checks() -> dict[str, dict]:
                resp = await http.get(server.url + "/v1/health/checks/legacy")
                return {c["CheckID"]: c for c in resp.json()} if resp.status_code == 200 else {}

            async def all_critical() -> dict[str, dict] | None:
                seen = await checks()
                done = len(seen) == len(MALFORMED) and all(
                    c["Status"] == "critical" and c["Output"] for c in seen.values()
                )
                return seen if done else None

            seen = await async_wait_until(
                all_critical, timeout=30, what="every malformed check to turn critical"
            )
            for check_id, (_, words) in MALFORMED.items():
                assert words in seen[check_id]["Output"], (check_id, seen[check_id]["Output"])

            async def canary_expired() -> bool:
                resp = await http.get(server.url + "/v1/health/checks/canary")
                return resp.status_code == 200 and any(
                    c["Status"] == "critical" and "TTL expired" in c["Output"] for c in resp.json()
                )

            await async_wait_until(canary_expired, timeout=15, what="the canary TTL to expire")

            # A bounded observation window (not a synchronisation): for 5 s the process stays
            # up, keeps the same leader key (no crash and re-election) and keeps answering.
            ends = time.monotonic() + 5
            while time.monotonic() < ends:
                assert server.proc is not None and server.proc.alive(), server.log()[-2000:]
                now = await client.get(keys.leader("health"))
                assert now is not None and now.value == leader.value
                assert now.create_revision == leader.create_revision
                health = await http.get(server.url + "/v1/weft/health")
                assert health.status_code == 200
                await _pause(0.25)
        # The native view of the NaN-timeout check is still valid JSON (no bare NaN).
        native = await http.get(server.url + "/v1/registry/services/legacy")
    assert native.status_code == 200
    json.loads(native.text, parse_constant=_refuse)
    assert "Traceback" not in server.log()


def _refuse(literal: str) -> None:
    raise AssertionError(f"the server answered the non-JSON literal {literal}")


async def _pause(seconds: float) -> None:
    import trio

    await trio.sleep(seconds)
