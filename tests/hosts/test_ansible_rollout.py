"""rollout.yml through `weft rollout` on two real systemd hosts, under steady traffic across
the mesh: a good release goes out host by host without one failed request, each host passing
through maintenance; a release that fails its checks stops at the first host. Run by
`make test-hosts`."""

from __future__ import annotations

import re

import pytest

from tests.harness import wait_until

from .ansible_fleet import Fleet, Load, make_build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MAINT = re.compile(r"^\s+(alpha|beta)\s+changed\s+weft_agent : Set the node's maintenance mode to "
                   r"(on|off)", re.MULTILINE)  # fmt: skip


def installed_mesh(start_host, etcd, prefix, tmp_path) -> Fleet:
    fleet = Fleet(start_host, etcd, prefix, tmp_path)
    fleet.write_inventory()
    site = fleet.run("site.yml")
    assert site.returncode == 0, site.explain()
    wait_until(
        lambda: (
            len(fleet.get("/v1/registry/instances")) == 4
            and all(i["status"] == "passing" for i in fleet.get("/v1/registry/instances"))
        ),
        timeout=60,
        what="all four instances to pass",
    )
    return fleet


def warm(load: Load, at_least: int) -> None:
    start = load.total
    wait_until(lambda: load.total >= start + at_least, timeout=60, what="steady traffic")


def test_rollout_upgrades_host_by_host_under_steady_traffic_without_a_failed_request(
    start_host, etcd, prefix, tmp_path
) -> None:
    fleet = installed_mesh(start_host, etcd, prefix, tmp_path)
    release = make_build(tmp_path, "0.1.1.dev1")
    fleet.write_inventory(source=release)
    with Load(fleet) as load:
        warm(load, 50)
        rollout = fleet.run("rollout.yml")
        warm(load, 50)
    print(f"rollout took {rollout.seconds:.0f}s; {load.total} requests answered, "
          f"{len(load.failures)} failed: {dict(load.ok)}")  # fmt: skip
    assert rollout.returncode == 0, rollout.explain()
    assert load.failures == [], f"{len(load.failures)} failed of {load.total}: {load.failures[:5]}"
    for name in ("alpha", "beta"):
        assert fleet.installed_version(name) == "0.1.1.dev1", name
        assert fleet.hosts[name].unit_property("weft-agent.service", "ActiveState") == "active"
        assert (
            fleet.hosts[name]
            .unit_property("weft-agent.service", "Environment")
            .endswith("WEFT_BUILD=0.1.1.dev1")
        ), name
    # Traffic crossed the mesh both ways, and kept doing so.
    assert load.ok["web@alpha -> api@beta"] > 0 and load.ok["web@beta -> api@alpha"] > 0, load.ok
    # Each host went through maintenance, one after the other: the registry showed it (the
    # load generator's watch), and so did the rollout, in order.
    assert set(load.maintenance_seen) == {"alpha", "beta"}, load.maintenance_seen
    assert load.maintenance_seen["alpha"] < load.maintenance_seen["beta"]
    assert MAINT.findall(rollout.stdout) == [
        ("alpha", "on"), ("alpha", "off"), ("beta", "on"), ("beta", "off")
    ], rollout.stdout  # fmt: skip
    assert fleet.get("/v1/registry/maintenance") == {}
    assert rollout.summary["failures"] == []

    # A second rollout of the same release finds nothing to do and drains nobody.
    again = fleet.run("rollout.yml")
    assert again.returncode == 0, again.explain()
    assert again.changed() == {"alpha": 0, "beta": 0}, again.explain()


def test_a_release_failing_its_checks_stops_the_rollout_at_the_first_host(
    start_host, etcd, prefix, tmp_path
) -> None:
    fleet = installed_mesh(start_host, etcd, prefix, tmp_path)
    beta_agent = fleet.beta.unit_properties("weft-agent.service", "MainPID", "NRestarts")
    broken = make_build(tmp_path, "0.1.1.dev2", break_http_checks=True)
    fleet.write_inventory(source=broken, weft_agent_checks_timeout=20)
    with Load(fleet) as load:
        warm(load, 50)
        rollout = fleet.run("rollout.yml")
        served_after = load.ok["web@beta -> api@beta"]
        warm(load, 50)
    print(f"failed rollout took {rollout.seconds:.0f}s; {load.total} requests answered, "
          f"{len(load.failures)} failed: {dict(load.ok)}")  # fmt: skip
    # weft rollout fails, naming the host and the checks that did not pass.
    assert rollout.returncode == 2, rollout.explain()
    [failure] = rollout.summary["failures"]
    assert failure["host"] == "alpha", failure
    assert "web-health" in failure["message"] and "critical" in failure["message"], failure
    assert re.search(r"weft rollout: alpha failed at .*web-health", rollout.stderr), rollout.stderr
    assert rollout.summary["hosts"]["beta"]["result"] == "not reached", rollout.summary
    # alpha keeps the bad build, out of service (in maintenance) for someone to look at.
    assert fleet.installed_version("alpha") == "0.1.1.dev2"
    assert "alpha" in fleet.get("/v1/registry/maintenance")
    # beta was not touched, and serves on: the load only reached web on beta, which reached
    # api on beta, and not one request failed.
    assert fleet.installed_version("beta") == "0.1.0"
    assert fleet.beta.unit_properties("weft-agent.service", "MainPID", "NRestarts") == beta_agent
    assert load.ok["web@beta -> api@beta"] > served_after, load.ok
    assert load.failures == [], f"{len(load.failures)} failed of {load.total}: {load.failures[:5]}"
