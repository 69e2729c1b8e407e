"""Every shipped systemd unit passes `systemd-analyze verify` with no complaint at all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted(ROOT.glob("*/systemd/*.service"))


def test_units_are_shipped() -> None:
    assert {u.name for u in UNITS} >= {
        "weft-agent.service",
        "weft-server.service",
        "weft-gateway.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_analyze_verify_is_clean(unit: Path, tmp_path: Path) -> None:
    # Verify inside a scratch root that has the system's units and the binary the unit runs,
    # exactly where the unit expects it, without touching the machine's /opt or /etc.
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for line in unit.read_text().splitlines():
        if line.startswith("Exec") and "=" in line:
            program = line.split("=", 1)[1].lstrip("-@:+!").split()[0]
            exe = root / program.lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    target = root / "etc/systemd/system" / unit.name
    target.parent.mkdir(parents=True)
    shutil.copy(unit, target)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{unit.name}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_every_unit_sets_an_open_file_limit_its_connection_cap_fits_under() -> None:
    import dataclasses

    from agent._config import AgentConfig
    from registry._config import ServerConfig
    from registry.web._admission import FD_RESERVE
    from weft.cli.gateway import GatewaySettings

    gateway_cap = next(
        f.default for f in dataclasses.fields(GatewaySettings) if f.name == "max_connections"
    )
    caps = {
        "weft-server.service": ServerConfig().max_connections,
        "weft-agent.service": AgentConfig().api_max_connections,
        # a public connection and, while it forwards, its connection to a sidecar
        "weft-gateway.service": 2 * int(gateway_cap),  # type: ignore[call-overload]
    }
    for unit in UNITS:
        limits = [
            line.split("=", 1)[1]
            for line in unit.read_text().splitlines()
            if line.startswith("LimitNOFILE=")
        ]
        assert limits, f"{unit.name} sets no LimitNOFILE"
        assert caps[unit.name] + FD_RESERVE <= int(limits[0]), unit.name
