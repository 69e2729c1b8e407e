"""The agent against hostile input: its unauthenticated snapshot endpoint refuses bad `wait`
and `index` with a 400 naming the parameter (on main `wait=nan` killed the agent), and a
service definition whose check the runner could not run exits 64 naming file and field."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import WeftAgent, WeftServer


def agent_token(server: WeftServer, node: str) -> str:
    resp = httpx.post(
        server.url + "/v1/tokens", json={"role": "agent", "node": node}, headers=server.headers()
    )
    resp.raise_for_status()
    return resp.json()["secret"]


@pytest.fixture
def make_agent(server: WeftServer, tmp_path):
    agents: list[WeftAgent] = []

    def make(node: str) -> WeftAgent:
        agent = WeftAgent(server.url, agent_token(server, node), tmp_path, node=node)
        agents.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in agents:
            agent.stop()


BAD_SNAPSHOT_PARAMS = [
    ("wait", {"wait": "nan"}),
    ("wait", {"wait": "NaN"}),
    ("wait", {"wait": "inf"}),
    ("wait", {"wait": "1e999"}),
    ("wait", {"wait": "-1s"}),
    ("index", {"index": "-1"}),
    ("index", {"index": "abc"}),
    ("index", {"index": "1e3"}),
]


async def test_bad_wait_or_index_on_the_snapshot_endpoint_is_400_and_the_agent_lives(
    make_agent,
) -> None:
    agent = make_agent("vm-hostile")
    agent.define("web", 'name = "web"\nport = 8080\n')
    agent.start()
    async with httpx.AsyncClient(timeout=10) as http:
        for name, params in BAD_SNAPSHOT_PARAMS:
            for proxy_id in ("web", "nobody"):
                resp = await http.get(
                    f"http://{agent.address}/v1/agent/proxy/{proxy_id}/snapshot", params=params
                )
                assert resp.status_code == 400, (params, resp.text)
                error = resp.json()["error"]
                assert error["field"] == name and error["message"].startswith(f"{name}: ")
        status = await http.get(f"http://{agent.address}/v1/agent/status")
        deep = await http.put(f"http://{agent.address}/v1/agent/proxy/web/ack", content=b"[" * 5000)
    assert status.status_code == 200
    assert deep.status_code == 400 and "deeper than 32" in deep.text
    assert agent.proc is not None and agent.proc.alive(), agent.log()[-2000:]


CHECK = 'name = "web"\nport = 80\n[[checks]]\n'


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ('http = "http://h:1:/"\ninterval = "10s"\n', "checks[0].http"),
        ('http = "http://h/"\ninterval = "10s"\nheader = { X-A = ["é"] }\n', "checks[0].header"),
        ('http = "http://h/"\ninterval = "10s"\ntimeout = nan\n', "checks[0].timeout"),
        ('tcp = "h:80"\ninterval = inf\n', "checks[0].interval"),
        ('tcp = "h:80"\ninterval = "1e999"\n', "checks[0].interval"),
        (f'http = "http://{"a" * 64}.example/"\ninterval = "10s"\n', "checks[0].http"),
        ('tcp = "h:99999"\ninterval = "10s"\n', "checks[0].tcp"),
        ("ttl = { seconds = 10 }\n", "checks[0].ttl"),
        ('args = ["/bin/true", "a\\u0000b"]\ninterval = "10s"\n', "checks[0].args[1]"),
    ],
)
def test_a_definition_whose_check_cannot_run_exits_64_naming_file_and_field(
    make_agent, check, field
) -> None:
    agent = make_agent("vm-baddef")
    agent.define("web", CHECK + check)
    agent.start(wait=False)
    assert agent.proc is not None
    code = agent.proc.popen.wait(timeout=30)
    assert code == 64, agent.log()
    assert "web.toml" in agent.log() and field in agent.log(), agent.log()
