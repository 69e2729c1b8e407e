"""Every call the roles make to a Weft server verifies its HTTPS certificate with the bundle
the roles keep (`ca_path`). The servers serve HTTPS by default: a call without it fails
certificate verification, on the second `site.yml` run at the latest (the token re-scoping
call did, and only the slow host tests saw it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
SERVER_URLS = ("{{ weft_agent_server_urls", "{{ weft_server_local_url")


def _uri_tasks(tasks: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not isinstance(tasks, list):
        return found
    for task in tasks:
        if not isinstance(task, dict):
            continue
        for nested in ("block", "rescue", "always"):
            found += _uri_tasks(task.get(nested))
        call = task.get("ansible.builtin.uri") or task.get("uri")
        if isinstance(call, dict):
            found.append({"name": task.get("name"), **call})
    return found


def test_every_call_to_a_weft_server_verifies_it_with_the_kept_bundle() -> None:
    calls = []
    for path in sorted(ANSIBLE.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for call in _uri_tasks(doc):
            if str(call.get("url", "")).strip().startswith(SERVER_URLS):
                calls.append((f"{path.relative_to(ANSIBLE)}: {call['name']}", call))
    assert len(calls) >= 10  # the roles' registry calls were found at all
    unverified = [where for where, call in calls if "ca_path" not in call]
    assert unverified == []
