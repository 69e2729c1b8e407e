"""The test hosts give later tests a real systemd: what the agent and Ansible tests rely on.

Each test boots its own hosts (well under a second each once the root is cached).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.harness import wait_until
from tests.harness.hosts import (
    Bind,
    SystemdHost,
    reap_stale_hosts,
    ssh_client_options,
    write_inventory,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SMOKE_SERVICE = Path(__file__).with_name("smoke_service.py")
NOTIFY_UNIT = """\
[Unit]
Description=Weft host smoke test: a Type=notify service with a watchdog

[Service]
Type=notify
ExecStart=/usr/bin/python3 /opt/smoke/service.py
ExecReload=/bin/kill -HUP $MAINPID
Environment=READY_DELAY={ready_delay}
WatchdogSec=2
Restart=on-failure
RestartSec=200ms
TimeoutStopSec=5
LimitCORE=0
"""


def install_smoke_service(host: SystemdHost, ready_delay: float = 0.0) -> None:
    host.copy_in(SMOKE_SERVICE, "/opt/smoke/service.py")
    host.install_unit("smoke.service", NOTIFY_UNIT.format(ready_delay=ready_delay))


def recorded(host: SystemdHost, name: str) -> list[tuple[int, float]]:
    """Lines `pid time` the smoke service wrote to /run/smoke/<name>."""
    result = host.run(["cat", f"/run/smoke/{name}"])
    if not result.ok:
        return []
    pairs = (line.split() for line in result.stdout.splitlines())
    return [(int(pid), float(at)) for pid, at in pairs]


def test_two_hosts_boot_concurrently_to_running_with_journald(start_host) -> None:
    began = time.monotonic()
    alpha = start_host("alpha", wait=False)
    beta = start_host("beta", wait=False)
    states = {host.name: host.wait_until_running() for host in (alpha, beta)}
    booted = time.monotonic() - began

    failed = {host.name: host.failed_units for host in (alpha, beta)}
    assert states == {"alpha": "running", "beta": "running"}, failed
    assert failed == {"alpha": [], "beta": []}
    print(f"two hosts booted to running in {booted:.1f} s")
    for host in (alpha, beta):
        assert host.run("hostname", check=True).stdout.strip() == host.name
        # systemd is PID 1 of the host's own PID namespace, in a container as far as it knows.
        assert host.read_text("/proc/1/comm").strip() == "systemd"
        assert host.run("systemd-detect-virt", check=False).stdout.strip() == "container-other"
        assert host.unit_property("systemd-journald.service", "ActiveState") == "active"
        assert host.unit_property("dbus.service", "ActiveState") == "active"
        assert host.unit_property("systemd-logind.service", "ActiveState") == "active"
        host.run(["logger", "-t", "smoke", f"hello from {host.name}"], check=True)
    for host in (alpha, beta):
        wait_until(
            lambda host=host: f"hello from {host.name}" in host.run(
                ["journalctl", "-b", "-t", "smoke", "--no-pager"]).stdout,
            timeout=15, what=f"the journal of {host.name} to show the logged line",
        )  # fmt: skip
        assert f"hello from {'beta' if host is alpha else 'alpha'}" not in host.journal()
    ids = {host.read_text("/etc/machine-id") for host in (alpha, beta)}
    assert len(ids) == 2, "each host has its own machine-id"
    # Own PID namespaces: neither sees the other's (or the machine's) processes.
    assert int(alpha.run("ps -e --no-headers | wc -l", check=True).stdout) < 40


def test_notify_unit_start_returns_only_after_ready(start_host) -> None:
    host = start_host("notify")
    install_smoke_service(host, ready_delay=2.0)

    began = time.time()
    host.systemctl("start", "smoke.service")
    returned = time.time()

    ((ready_pid, ready_at),) = recorded(host, "ready")
    ((started_pid, started_at),) = recorded(host, "started")
    assert ready_pid == started_pid == int(host.unit_property("smoke.service", "MainPID"))
    assert ready_at - started_at >= 2.0
    assert returned >= ready_at, "systemctl start returned before the service sent READY=1"
    assert returned - began >= 2.0
    props = host.unit_properties("smoke.service", "ActiveState", "SubState", "StatusText")
    assert props == {"ActiveState": "active", "SubState": "running", "StatusText": "serving"}

    # Without blocking, the unit is seen `activating` until READY=1 arrives.
    host.systemctl("restart", "--no-block", "smoke.service")
    wait_until(
        lambda: host.unit_properties("smoke.service", "ActiveState", "SubState")
        == {"ActiveState": "activating", "SubState": "start"},
        timeout=5, interval=0.05, what="smoke.service to be activating",
    )  # fmt: skip
    host.wait_for_unit("smoke.service", "active", timeout=15)
    assert len(recorded(host, "ready")) == 2


def test_watchdog_restarts_a_sigstopped_service(start_host) -> None:
    host = start_host("watchdog")
    install_smoke_service(host)
    host.systemctl("start", "smoke.service")
    first_pid = int(host.unit_property("smoke.service", "MainPID"))
    assert host.unit_property("smoke.service", "WatchdogUSec") == "2s"
    assert host.unit_property("smoke.service", "NRestarts") == "0"

    stopped_at = time.monotonic()
    host.run(["kill", "-STOP", str(first_pid)], check=True)

    def restarted() -> bool:
        props = host.unit_properties("smoke.service", "NRestarts", "MainPID", "ActiveState")
        return (
            props["NRestarts"] == "1"
            and props["ActiveState"] == "active"
            and int(props["MainPID"]) not in (0, first_pid)
        )

    wait_until(restarted, timeout=30, interval=0.1, what="the watchdog to restart smoke.service")
    took = time.monotonic() - stopped_at
    print(f"watchdog restart {took:.1f} s after SIGSTOP")
    assert took >= 2.0, "restarted before the 2 s watchdog period ran out"
    journal = host.journal("smoke.service")
    assert "Watchdog timeout (limit 2s)" in journal
    assert "Failed with result 'watchdog'" in journal
    assert not host.exists(f"/proc/{first_pid}"), "the hung process is gone"


def test_reload_delivers_sighup_to_the_main_process(start_host) -> None:
    host = start_host("reload")
    install_smoke_service(host)
    host.systemctl("start", "smoke.service")
    main_pid = int(host.unit_property("smoke.service", "MainPID"))

    host.systemctl("reload", "smoke.service")
    wait_until(lambda: recorded(host, "reloads"), timeout=10, what="the SIGHUP to be recorded")
    host.systemctl("reload", "smoke.service")
    wait_until(lambda: len(recorded(host, "reloads")) == 2, timeout=10, what="a second SIGHUP")

    assert [pid for pid, _ in recorded(host, "reloads")] == [main_pid, main_pid]
    assert int(host.unit_property("smoke.service", "MainPID")) == main_pid, "reload, not restart"
    assert host.unit_property("smoke.service", "NRestarts") == "0"


def test_ssh_as_root_with_the_generated_key(start_host, ssh_keypair) -> None:
    alpha = start_host("alpha")
    beta = start_host("beta")
    assert alpha.ssh_port != beta.ssh_port

    for host in (alpha, beta):
        plain = subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
             "-i", str(ssh_keypair.private), "-p", str(host.ssh_port), "root@127.0.0.1",
             "hostname"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert (plain.returncode, plain.stdout.strip()) == (0, host.name), plain.stderr
        # With the host's own key pinned in known_hosts (StrictHostKeyChecking=yes).
        checked = host.ssh("id -un; systemctl is-system-running")
        assert checked.stdout.split() == ["root", "running"], checked.stderr

    def ssh(port: int, known_hosts: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *ssh_client_options(ssh_keypair, known_hosts), *extra, "-p", str(port),
             "root@127.0.0.1", "true"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    assert ssh(alpha.ssh_port, alpha.known_hosts).returncode == 0
    # Key only: no password or keyboard-interactive way in.
    assert ssh(alpha.ssh_port, alpha.known_hosts, "-o", "PubkeyAuthentication=no").returncode == 255
    # Each host has its own host key: alpha's known_hosts entry does not vouch for beta.
    assert ssh(beta.ssh_port, alpha.known_hosts).returncode == 255


def test_ansible_reaches_the_hosts_over_ssh_and_sees_systemd(start_host, tmp_path) -> None:
    alpha = start_host("alpha")
    beta = start_host("beta")
    inventory = write_inventory(tmp_path / "inventory.yml", [alpha, beta],
                                groups={"servers": [alpha], "agents": [alpha, beta]})  # fmt: skip
    # ControlPath sockets must fit in 108 bytes: keep them out of pytest's long tmp paths.
    control = Path(tempfile.mkdtemp(prefix="ans-", dir="/tmp"))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_NOCOLOR": "1",
    }
    playbook = tmp_path / "smoke.yml"
    playbook.write_text(
        textwrap.dedent("""\
        - hosts: agents
          gather_facts: true
          gather_subset: [min]
          tasks:
            - ansible.builtin.ping:
            - ansible.builtin.copy:
                dest: /etc/smoke-marker
                content: "{{ inventory_hostname }}\\n"
                mode: "0644"
            - ansible.builtin.systemd_service:
                name: ssh.service
                state: started
                enabled: true
            - ansible.builtin.assert:
                that: ansible_service_mgr == "systemd"
    """)
    )
    try:
        ansible = Path(sys.executable).with_name("ansible-playbook")
        proc = subprocess.run(
            [str(ansible), "-i", str(inventory), str(playbook)], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        subprocess.run(["rm", "-rf", str(control)], check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = dict(re.findall(r"^(alpha|beta)\s+:\s+(ok=.*)$", proc.stdout, re.MULTILINE))
    assert set(recap) == {"alpha", "beta"}, proc.stdout[-3000:]
    for line in recap.values():
        assert "unreachable=0" in line and "failed=0" in line, proc.stdout[-3000:]
    for host in (alpha, beta):
        assert host.read_text("/etc/smoke-marker") == f"{host.name}\n"


def _mounts_mentioning(text: str) -> list[str]:
    """Mount lines in any process's mount namespace that mention `text` (e.g. a host's dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found += [line for line in (entry / "mountinfo").read_text().splitlines()
                          if text in line]  # fmt: skip
            except OSError:
                continue
    return found


def _still_there(pids_and_starts: dict[int, str]) -> list[int]:
    left = []
    for pid, start in pids_and_starts.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat.rsplit(")", 1)[1].split()[19] == start:  # same process, not a reused pid
            left.append(pid)
    return left


def _snapshot(host: SystemdHost) -> dict[int, str]:
    snap = {}
    for pid in host.pids():
        try:
            snap[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except FileNotFoundError:
            continue
    return snap


def assert_nothing_left(host: SystemdHost, pids: dict[int, str]) -> None:
    assert _still_there(pids) == [], "processes of the host survived stop()"
    # Not in the machine's mount table, nor in any namespace that outlived the host.
    assert _mounts_mentioning(host.id) == []
    assert not host.dir.exists(), "the host's directory is left"
    assert host.cgroup is not None and not host.cgroup.exists(), "the host's cgroup is left"


def test_stop_leaves_no_process_mount_or_directory(start_host) -> None:
    host = start_host("leaks")
    install_smoke_service(host)
    host.systemctl("start", "smoke.service")
    host.run("sleep 1000 >/dev/null 2>&1 &", check=True)  # outside any unit, in the PID namespace
    pids = _snapshot(host)
    assert host.pid in pids and len(pids) >= 5
    # The host's mounts exist only in its own namespace, never in the machine's.
    own = Path(f"/proc/{host.pid}/mountinfo").read_text()
    assert any(" - overlay " in line and host.id in line for line in own.splitlines())
    assert host.id not in Path("/proc/self/mountinfo").read_text()
    ssh_port = host.ssh_port

    began = time.monotonic()
    host.stop()
    print(f"stop took {time.monotonic() - began:.2f} s")
    assert_nothing_left(host, pids)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ssh_port), timeout=2).close()
    host.stop()  # twice is harmless


def test_a_failing_test_still_stops_its_host(testhost_root, ssh_keypair) -> None:
    host = SystemdHost("failing", ssh_key=ssh_keypair, root=testhost_root)
    with pytest.raises(RuntimeError, match="the test failed"), host:
        pids = _snapshot(host)
        raise RuntimeError("the test failed")
    assert_nothing_left(host, pids)


def test_hosts_die_with_a_killed_owner_and_are_reaped(testhost_root, tmp_path) -> None:
    """Even a SIGKILLed pytest leaks no process; its directories and cgroup go next session."""
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""\
            import json, sys, time
            from pathlib import Path
            from tests.harness.hosts import SystemdHost
            host = SystemdHost("orphan", root=Path({str(testhost_root)!r})).start()
            print(json.dumps({{"dir": str(host.dir), "cgroup": str(host.cgroup),
                              "pids": host.pids()}}), flush=True)
            time.sleep(600)
        """)],
        cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        info = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    host_dir, cgroup = Path(info["dir"]), Path(info["cgroup"])
    wait_until(
        lambda: all(not Path(f"/proc/{pid}").exists() for pid in info["pids"]),
        timeout=15, what="the orphaned host's processes to die with their owner",
    )  # fmt: skip
    assert _mounts_mentioning(host_dir.name) == []
    # Its directory and cgroup wait for the next reaper (maybe a concurrent session's).
    reap_stale_hosts()
    assert not host_dir.exists() and not cgroup.exists()


HARDENED_UNIT = """\
[Unit]
Description=Weft host smoke test: the sandboxing a hardened unit asks for

[Service]
Type=oneshot
RemainAfterExit=yes
DynamicUser=yes
StateDirectory=smoke-hardened
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=@system-service
ExecStart=/bin/sh -c 'id -un > /var/lib/smoke-hardened/whoami; \
    touch /etc/forbidden || echo ro > /var/lib/smoke-hardened/etc'
"""


def test_hardened_unit_with_dynamic_user_runs(start_host) -> None:
    host = start_host("hardened")
    host.install_unit("hardened.service", HARDENED_UNIT)
    result = host.systemctl("start", "hardened.service", check=False)
    assert result.ok, result.stderr + host.journal("hardened.service")
    assert host.read_text("/var/lib/smoke-hardened/whoami").strip() == "hardened"
    assert host.read_text("/var/lib/smoke-hardened/etc").strip() == "ro"
    assert not host.exists("/etc/forbidden")


@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_each_host_writes_its_own_root_never_the_cached_one(
    start_host, testhost_root, storage
) -> None:
    host = start_host(f"own-{storage}", storage=storage)
    assert host.mode == storage
    host.write_file("/etc/weft-smoke", "mine\n")
    host.run("rm -f /etc/debian_version", check=True)
    assert host.read_text("/etc/weft-smoke") == "mine\n"
    assert not (testhost_root / "etc" / "weft-smoke").exists()
    assert (testhost_root / "etc" / "debian_version").exists()


def test_binds_and_poweroff_stop_units_in_order(start_host, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    (readonly / "wheel.txt").write_text("from the machine\n")
    host = start_host(
        "binds",
        binds=[Bind(shared, "/srv/shared", readonly=False), Bind(readonly, "/srv/readonly")],
    )
    assert host.read_text("/srv/readonly/wheel.txt") == "from the machine\n"
    assert not host.run("touch /srv/readonly/x").ok, "a read-only bind is read-only"
    host.install_unit(
        "goodbye.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
        "ExecStop=/bin/sh -c 'echo stopped cleanly > /srv/shared/goodbye'\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    host.systemctl("start", "goodbye.service")
    pids = _snapshot(host)

    host.poweroff(timeout=60)

    assert (shared / "goodbye").read_text() == "stopped cleanly\n"
    assert_nothing_left(host, pids)
    assert (readonly / "wheel.txt").exists(), "binds are never removed with the host"


def test_sshd_moves_to_a_fresh_port_when_its_port_was_taken(start_host) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        host = start_host("squatted", ssh_port=taken)
        assert host.ssh_port != taken
        assert host.ssh("hostname").stdout.strip() == "squatted"
        assert host.failed_units == []
    finally:
        squatter.close()
