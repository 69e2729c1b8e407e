"""An agent with two servers rides out one that hangs (SIGSTOP): it fails over on the request
deadline and none of its instances leaves the catalog."""

from __future__ import annotations

import signal
import time

import httpx

from tests.harness import WeftAgent, wait_until

STOPPED_FOR = 20.0


def services_on(url: str, headers: dict[str, str], node: str) -> set[str]:
    resp = httpx.get(f"{url}/v1/catalog/node/{node}", headers=headers, timeout=5)
    resp.raise_for_status()
    return {svc["Service"] for svc in (resp.json() or {}).get("Services", {}).values()}


def test_agent_fails_over_from_a_stopped_server_without_losing_instances(
    start_server, tmp_path
) -> None:
    first = start_server()
    second = start_server(bootstrap=False)
    second.token = first.token
    headers = first.headers()
    token = httpx.post(
        first.url + "/v1/tokens", json={"role": "agent", "node": "vm-f"}, headers=headers
    ).json()["secret"]
    agent = WeftAgent(
        first.url,
        token,
        tmp_path,
        node="vm-f",
        extra={"servers": [first.url, second.url], "lease_ttl": "15s"},
    )
    agent.define("a", 'name = "alpha"\nport = 1001\n')
    agent.define("b", 'name = "beta"\nport = 1002\n')
    try:
        agent.start()
        wait_until(
            lambda: services_on(second.url, headers, "vm-f") == {"alpha", "beta"},
            timeout=15,
            what="the agent's instances in the catalog",
        )
        assert first.proc is not None
        first.proc.signal(signal.SIGSTOP)  # hung, not gone: connections open, nothing answers
        try:
            stopped = time.monotonic()
            while time.monotonic() - stopped < STOPPED_FOR:
                seen = services_on(second.url, headers, "vm-f")
                assert seen == {"alpha", "beta"}, (
                    f"{time.monotonic() - stopped:.1f}s after the stop: {seen}\n"
                    + agent.log()[-3000:]
                )
                time.sleep(0.5)
        finally:
            first.proc.signal(signal.SIGCONT)
        assert "our lease is gone" not in agent.log()
    finally:
        agent.stop()
