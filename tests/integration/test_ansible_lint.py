"""Weft's playbooks and roles pass ansible-lint's production profile and Ansible's own syntax
check (with the example inventory), in the normal suite: content that does not load never
reaches a host test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE = Path(__file__).parents[2] / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOKS = ["site.yml", "rollout.yml", "uninstall.yml"]


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        argv, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.timeout(300)
def test_ansible_lint_passes_the_production_profile() -> None:
    result = run(str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Profile 'production' was required, and it passed" in output, output[-3000:]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax_check(playbook: str) -> None:
    result = run(
        str(BIN / "ansible-playbook"), "--syntax-check",
        "-i", "inventory/example/hosts.yml", playbook,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"playbook: {playbook}" in result.stdout


def test_every_role_has_defaults_argument_specs_and_meta() -> None:
    for role in ("weft_common", "weft_server", "weft_agent", "weft_gateway", "etcd"):
        for part in ("defaults/main.yml", "meta/argument_specs.yml", "meta/main.yml",
                     "tasks/main.yml"):  # fmt: skip
            assert (ANSIBLE / "roles" / role / part).is_file(), f"{role}/{part} is missing"
    for role in ("weft_server", "weft_agent", "weft_gateway", "etcd"):
        assert (ANSIBLE / "roles" / role / "handlers/main.yml").is_file(), role
