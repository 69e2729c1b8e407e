"""`weft rollout`'s wiring that needs no Ansible run: finding the playbooks, the hosts of an
inventory, and clear errors for what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weft.cli._output import CommandError
from weft.cli.rollout import find_ansible_dir, find_playbook, inventory_hosts

REPO = Path(__file__).parents[2]


def test_the_playbooks_are_found_beside_the_source_and_by_name() -> None:
    ansible = find_ansible_dir(None)
    assert ansible == REPO / "ansible"
    for name in ("site.yml", "rollout.yml", "uninstall.yml"):
        assert find_playbook(ansible, name) == ansible / name


def test_a_wrong_directory_or_playbook_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not Weft's ansible/ directory") as info:
        find_ansible_dir(tmp_path)
    assert info.value.status == 66
    with pytest.raises(CommandError, match=r"no playbook 'deploy\.yml'"):
        find_playbook(REPO / "ansible", "deploy.yml")


def test_inventory_hosts_in_order_and_limited() -> None:
    example = REPO / "ansible/inventory/example/hosts.yml"
    assert inventory_hosts(example, None) == ["ctl-1", "vm-1", "vm-2"]
    assert inventory_hosts(example, "weft_servers") == ["ctl-1"]


def test_a_missing_inventory_exits_66_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = subprocess.run(
        [sys.executable, "-m", "weft", "rollout", "--inventory", str(missing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 66
    assert f"inventory {missing} does not exist" in result.stderr
