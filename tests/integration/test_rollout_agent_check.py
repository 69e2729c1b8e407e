"""`weft agent check`: what the weft_agent role validates each service definition with before
it writes it (and the whole set after), so a bad host variable fails the play, not the agent."""

from __future__ import annotations

import subprocess
import sys


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weft", "agent", "check", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_good_definitions_pass(tmp_path) -> None:
    (tmp_path / "web.toml").write_text('name = "web"\nport = 8080\n')
    (tmp_path / "api.toml").write_text(
        'name = "api"\nport = 9090\n[[checks]]\nhttp = "http://127.0.0.1:9090/"\ninterval = "5s"\n'
    )
    result = check(str(tmp_path / "web.toml"), str(tmp_path / "api.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 2 service definitions"


def test_a_bad_file_names_the_file_and_field_and_exits_64(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "web"\n')
    result = check(str(bad))
    assert result.returncode == 64
    assert f"{bad}: port: is required" in result.stderr
    bad.write_text('name = "web"\nport = 80\n[[checks]]\nicmp = "x"\n')
    result = check(str(bad))
    assert result.returncode == 64
    assert f"{bad}: checks[0].icmp: unknown field" in result.stderr


def test_a_duplicate_across_files_is_refused(tmp_path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text('name = "web"\nport = 8080\n')
    result = check(str(tmp_path / "a.toml"), str(tmp_path / "b.toml"))
    assert result.returncode == 64
    assert "'web' is already defined" in result.stderr


def test_without_files_it_checks_the_config_and_its_services_dir(tmp_path) -> None:
    services = tmp_path / "services.d"
    services.mkdir()
    (services / "web.toml").write_text('name = "web"\nport = 8080\n')
    config = tmp_path / "agent.toml"
    config.write_text(f'services_dir = "{services}"\n')
    result = check("--config", str(config))
    assert result.returncode == 0, result.stderr
    config.write_text(f'services_dir = "{services}"\nlease_ttl = "1s"\n')
    result = check("--config", str(config))
    assert result.returncode == 64
    assert "lease_ttl" in result.stderr
