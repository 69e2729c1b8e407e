"""An Ansible inventory for test hosts, so playbooks reach them over SSH as they would VMs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ._host import SystemdHost


def write_inventory(
    path: Path,
    hosts: Iterable[SystemdHost],
    *,
    groups: Mapping[str, Iterable[SystemdHost]] | None = None,
    group_vars: Mapping[str, Any] | None = None,
) -> Path:
    """Write a YAML inventory: every host under `all`, named by its hostname, plus `groups`."""
    inventory: dict[str, Any] = {
        "all": {"hosts": {host.name: host.ansible_vars() for host in hosts}, "children": {}}
    }
    if group_vars:
        inventory["all"]["vars"] = dict(group_vars)
    for group, members in (groups or {}).items():
        inventory["all"]["children"][group] = {"hosts": {host.name: None for host in members}}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path
