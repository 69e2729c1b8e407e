"""`weft check`'s verdicts from gathered facts (pure), and `--pre`'s host checks."""

from __future__ import annotations

import socket
from typing import Any

from weft.cli._check_judge import Limits, MeshFacts, ServerView, judge
from weft.cli._check_lines import exit_status
from weft.cli._check_pre import (
    clock_line,
    parse_etcd_version,
    port_line,
    python_line,
    systemd_line,
)

NOW = 1_800_000_000.0
DAY = 86400.0
DEFAULTS = Limits()


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def healthy(**changes: Any) -> MeshFacts:
    server = ServerView(
        "http://s1:8500",
        health={
            "status": "ok",
            "revision": 42,
            "time": NOW,
            "etcd": {"db_size_bytes": 1 << 20, "quota_bytes": 2 << 30, "alarms": []},
        },
        roots=["AA"],
        intention_default="deny",
        clock_offset=0.01,
    )
    agent = {
        "node": "vm-a",
        "age_seconds": 1.0,
        "lease_alive": True,
        "connected": True,
        "report_interval": 10.0,
        "sync_interval": 60.0,
        "last_sync_seconds": 20.0,
        "clock_offset_seconds": 0.2,
        "server": "s1:8500",
        "proxies": [
            {
                "id": "web",
                "service": "web",
                "version": 7,
                "applied_version": 7,
                "pending_seconds": 0.0,
                "refused": "",
                "running": True,
            }
        ],
        "certificates": [
            {
                "service": "web",
                "not_before": NOW - 3600,
                "not_after": NOW + 23 * 3600,
                "renew_at": NOW + 12 * 3600,
            }
        ],
    }
    facts = MeshFacts(
        now=NOW,
        servers=[server],
        announced=[
            {"identity": "s1", "url": "http://s1:8500", "intention_default": "deny", "stale": None}
        ],
        agents=[agent],
        agent_nodes={"vm-a"},
        roots={"roots": [{"name": "root", "active": True, "not_after": _iso(NOW + 3650 * DAY)}]},
        ca_status={"intermediate_not_after": _iso(NOW + 1000 * DAY)},
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def verdicts(facts: MeshFacts, limits: Limits = DEFAULTS) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for line in judge(facts, limits):
        out.setdefault(line.check, []).append((line.status, line.message))
    return out


def failures(facts: MeshFacts, limits: Limits = DEFAULTS) -> dict[str, list[str]]:
    return {
        check: [m for s, m in found if s == "fail"]
        for check, found in verdicts(facts, limits).items()
        if any(s == "fail" for s, _ in found)
    }


def test_a_healthy_mesh_passes_every_check() -> None:
    found = verdicts(healthy())
    assert set(found) == {
        "etcd",
        "etcd quota",
        "servers",
        "ca root",
        "ca intermediate",
        "agents",
        "clock",
        "proxies",
        "certificates",
    }
    assert all(status == "ok" for lines in found.values() for status, _ in lines)
    assert exit_status(judge(healthy(), Limits()), strict=True) == 0


def test_a_skewed_host_fails_naming_it_and_the_direction() -> None:
    facts = healthy()
    facts.agents[0]["clock_offset_seconds"] = -3.5
    assert failures(facts) == {
        "clock": ["host vm-a's clock is 3.5s behind the server at s1:8500 (bound 2s)"]
    }
    assert failures(facts, Limits(max_skew=5)) == {}


def test_a_proxy_behind_its_snapshot_fails_only_past_the_lag_bound() -> None:
    facts = healthy()
    facts.agents[0]["proxies"][0].update(version=8, applied_version=7, pending_seconds=3.0)
    assert failures(facts) == {}  # a snapshot being applied right now
    facts.agents[0]["proxies"][0]["pending_seconds"] = 12.0
    assert failures(facts)["proxies"] == [
        "web on vm-a has not applied snapshot v8 for 12s (applied v7)"
    ]


def test_a_stopped_proxy_and_a_refused_snapshot_are_named() -> None:
    facts = healthy()
    facts.agents[0]["proxies"][0]["running"] = False
    assert failures(facts)["proxies"] == ["web on vm-a is not running"]
    facts.agents[0]["proxies"][0].update(running=True, version=9, refused="bad tls")
    assert failures(facts)["proxies"] == [
        "web on vm-a refused snapshot v9: bad tls (still serving v7)"
    ]


def test_certificates_fail_when_expired_or_past_their_renewal_window() -> None:
    facts = healthy()
    cert = facts.agents[0]["certificates"][0]
    cert.update(not_before=NOW - 23 * 3600, not_after=NOW + 1800)  # past 90% of a day
    assert failures(facts)["certificates"] == [
        "certificate of web on vm-a is past its renewal window (expires in 30m)"
    ]
    cert.update(not_after=NOW - 60)
    assert failures(facts)["certificates"] == ["certificate of web on vm-a expired 60s ago"]


def test_dead_silent_and_missing_agents_are_named() -> None:
    facts = healthy(agent_nodes={"vm-a", "vm-old"})
    facts.agents[0]["lease_alive"] = False
    assert failures(facts)["agents"] == [
        "node vm-old has agent-registered instances but its agent does not report",
        "vm-a: its lease has expired (last report 1.0s ago)",
    ]
    facts = healthy()
    facts.agents[0]["age_seconds"] = 120.0
    assert failures(facts)["agents"] == ["vm-a: no report for 2m (expected every 10s)"]


def test_quota_headroom_warns_at_70_percent_and_fails_only_when_strict() -> None:
    facts = healthy()
    assert facts.servers[0].health is not None
    facts.servers[0].health["etcd"]["db_size_bytes"] = int(0.75 * (2 << 30))
    found = verdicts(facts)["etcd quota"]
    assert found == [("warn", "database is 75% of its 2.0 GiB quota")]
    lines = judge(facts, Limits())
    assert exit_status(lines, strict=False) == 0 and exit_status(lines, strict=True) == 1
    facts.servers[0].health["etcd"]["alarms"] = ["NOSPACE"]
    assert failures(facts)["etcd quota"] == ["etcd raised an alarm: NOSPACE; it refuses writes"]


def test_a_server_cut_off_from_etcd_and_disagreeing_servers_fail() -> None:
    facts = healthy()
    facts.servers[0].health = {
        "status": "stale",
        "reason": "etcd has not answered for 6.0s",
        "revision": 42,
        "time": NOW,
    }
    assert failures(facts)["etcd"] == [
        "unreachable from server http://s1:8500 (etcd has not answered for 6.0s)"
    ]
    facts = healthy()
    other = ServerView(
        "http://s2:8500",
        health={"status": "ok", "revision": 42, "time": NOW},
        roots=["BB"],
        intention_default="allow",
        clock_offset=4.0,
    )
    facts.servers.append(other)
    assert failures(facts) == {
        "servers": [
            "servers disagree on the intention default (allow, deny)",
            "servers serve different CA roots (http://s1:8500: 1 roots; http://s2:8500: 1 roots)",
        ],
        "clock": ["the servers' clocks differ by 4.0s (bound 2s)"],
    }


def test_no_server_answering_is_the_only_line() -> None:
    facts = MeshFacts(now=NOW, servers=[ServerView("http://s1:8500", error="connection refused")])
    lines = judge(facts, Limits())
    assert [(line.check, line.status, line.message) for line in lines] == [
        ("servers", "fail", "http://s1:8500 does not answer (connection refused)")
    ]


def test_a_root_within_the_threshold_fails_and_outside_it_passes() -> None:
    facts = healthy(
        roots={"roots": [{"name": "r", "active": True, "not_after": _iso(NOW + 5 * DAY)}]}
    )
    assert failures(facts)["ca root"] == [
        f"root r expires in 5d 0h ({_iso(NOW + 5 * DAY)}), within the 30d 0h threshold"
    ]
    assert "ca root" not in failures(facts, Limits(ca_expiry=2 * DAY))
    facts = healthy(ca_status={"intermediate_not_after": _iso(NOW - 2 * 3600)})
    assert failures(facts)["ca intermediate"] == [
        f"intermediate expired 2h 0m ago ({_iso(NOW - 2 * 3600)})"
    ]


# -- --pre ----------------------------------------------------------------------------------


def test_pre_reads_etcd_versions_and_refuses_old_python() -> None:
    assert parse_etcd_version("etcd Version: 3.5.17\nGit SHA: abc\n") == (3, 5, 17)
    assert parse_etcd_version("something else") is None
    assert python_line((3, 10, 4), "/usr/bin/python3").status == "fail"
    assert python_line((3, 12, 1), "/usr/bin/python3").status == "ok"


def test_pre_names_a_port_in_use() -> None:
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        line = port_line(port)
    assert (line.status, line.message) == ("fail", f"port {port} is in use")
    assert port_line(port).status == "ok"  # once it is released


def test_pre_clock_and_systemd_say_what_they_saw() -> None:
    assert clock_line(lambda argv: "yes\n" if argv[0] == "timedatectl" else None).status == "ok"
    assert clock_line(lambda argv: "no\n" if argv[0] == "timedatectl" else None).status == "fail"
    assert systemd_line("systemd").status == "ok"
    assert systemd_line("bash").message == "PID 1 is bash, not systemd"


# -- what the agent reports -----------------------------------------------------------------


def test_an_agent_reports_a_refusal_only_for_the_version_it_still_offers() -> None:
    from types import SimpleNamespace

    from agent._publisher import Publisher
    from agent._report import build_report

    publisher = Publisher()
    publisher.publish("web-1", {"listeners": []})
    first = publisher.proxies["web-1"].version
    publisher.record_ack("web-1", {"accepted": True, "version": first, "reason": ""})
    publisher.publish("web-1", {"listeners": ["changed"]})
    second = publisher.proxies["web-1"].version
    publisher.record_ack("web-1", {"accepted": False, "version": second, "reason": "bad tls"})

    def report(now: float) -> dict[str, Any]:
        return build_report(
            registrar=SimpleNamespace(lease="abc", connected=True),  # type: ignore[arg-type]
            publisher=publisher,
            certs=None,
            running={"web-1": {"pid": 7}},
            services={"web-1": "web"},
            sync_interval=60.0,
            report_interval=10.0,
            now=NOW,
            monotonic=now,
            since_sync=3.0,
        )

    (proxy,) = report(publisher.proxies["web-1"].published_at + 4)["proxies"]
    assert proxy == {
        "id": "web-1",
        "service": "web",
        "version": second,
        "applied_version": first,
        "pending_seconds": 4.0,
        "refused": "bad tls",
        "running": True,
    }
    # A newer version replaces the refused one: now it is only pending.
    publisher.publish("web-1", {"listeners": ["fixed"]})
    (proxy,) = report(publisher.proxies["web-1"].published_at + 1)["proxies"]
    assert proxy["refused"] == "" and proxy["pending_seconds"] == 1.0
    assert proxy["applied_version"] == first


def test_a_report_interval_out_of_bounds_is_refused_naming_the_field() -> None:
    import pytest

    from agent._config import AgentConfig
    from agent._errors import ConfigError

    for bad in (0.1, 3600.0):
        with pytest.raises(ConfigError) as info:
            AgentConfig(servers=("http://127.0.0.1:8500",), report_interval=bad).validate()
        assert info.value.field == "report_interval"
    AgentConfig(servers=("http://127.0.0.1:8500",), report_interval=1.0).validate()


def test_a_gateway_the_agent_does_not_run_is_not_reported_as_a_dead_proxy() -> None:
    """`weft gateway` runs in its own unit: the agent has no pid for it, and `weft check`
    must not call it "not running"; a sidecar of the agent's without a pid still is."""
    from types import SimpleNamespace

    from agent._publisher import Publisher
    from agent._report import build_report

    publisher = Publisher()
    for proxy_id in ("edge", "web-1"):
        publisher.publish(proxy_id, {"listeners": []})
    body = build_report(
        registrar=SimpleNamespace(lease="abc", connected=True),  # type: ignore[arg-type]
        publisher=publisher,
        certs=None,
        running={"web-1": {"pid": None}},  # the supervisor runs sidecars only
        services={"edge": "edge", "web-1": "web"},
        sync_interval=60.0,
        report_interval=10.0,
        now=NOW,
        monotonic=NOW,
        since_sync=3.0,
    )
    assert {p["id"]: p["running"] for p in body["proxies"]} == {"edge": True, "web-1": False}
