"""`weft maint` on a host takes the agent's servers, token and CA from agent.toml; an agent that
joined by fingerprint verifies the servers' HTTPS with the bundle it pinned, and so does maint."""

from __future__ import annotations

from pathlib import Path

from weft.cli.maint import agent_defaults


def test_a_fingerprint_agent_lends_maint_the_bundle_it_pinned(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'servers = ["https://10.0.0.10:8500"]\nnode_name = "vm-1"\n'
        f'data_dir = "{tmp_path / "data"}"\nca_fingerprint = "sha256:{"AB:" * 31}AB"\n'
    )
    found = agent_defaults(str(config))
    assert found["address"] == "https://10.0.0.10:8500"
    assert found["ca_file"] == str(tmp_path / "data" / "ca.pem")


def test_a_bundle_agent_lends_maint_its_ca_file_and_plain_http_needs_none(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('servers = ["https://s:8500"]\nca_file = "/etc/weft/server-ca.pem"\n')
    assert agent_defaults(str(config))["ca_file"] == "/etc/weft/server-ca.pem"
    config.write_text('servers = ["http://s:8500"]\n')
    assert agent_defaults(str(config))["ca_file"] == ""
