"""The `weft` CLI against a real server: tables for people, JSON for scripts, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import WeftServer


def weft(
    *args: str,
    token: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    full_env.pop("WEFT_TOKEN", None)
    if token:
        full_env["WEFT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "weft", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=full_env,
        timeout=60,
    )


def test_register_list_show_deregister(server: WeftServer, tmp_path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(
        "- service: web\n  id: web-1\n  node: vm-1\n  address: 10.0.0.5\n  port: 8080\n"
        "  tags: [v1]\n  checks:\n    - id: web-ttl\n      ttl: 30s\n"
        "- service: web\n  id: web-2\n  node: vm-2\n  address: 10.0.0.6\n  port: 8080\n"
    )
    done = weft("service", "register", str(spec), "--address", server.url, token=server.token)
    assert done.returncode == 0, done.stderr
    assert "registered web/web-1 on node vm-1" in done.stdout

    table = weft("services", "--address", server.url, token=server.token)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == [
        "SERVICE",
        "INSTANCES",
        "PASSING",
        "WARNING",
        "CRITICAL",
        "MAINT",
        "TAGS",
    ]
    assert row.split() == ["web", "2", "1", "0", "1", "0", "v1"]

    as_json = weft("services", "-o", "json", "--address", server.url, token=server.token)
    assert json.loads(as_json.stdout)[0]["critical"] == 1

    show = weft("service", "show", "web", "-o", "json", "--address", server.url, token=server.token)
    instances = json.loads(show.stdout)
    assert [i["id"] for i in instances] == ["web-1", "web-2"]
    assert instances[0]["checks"][0]["id"] == "web-ttl"

    gone = weft(
        "service",
        "deregister",
        "web",
        "web-2",
        "--node",
        "vm-2",
        "--address",
        server.url,
        token=server.token,
    )
    assert gone.returncode == 0, gone.stderr
    show = weft("service", "show", "web", "-o", "json", "--address", server.url, token=server.token)
    assert [i["id"] for i in json.loads(show.stdout)] == ["web-1"]


def test_kv_commands(server: WeftServer) -> None:
    put = weft(
        "kv", "put", "app/color", "-", "--address", server.url, token=server.token, stdin="blue"
    )
    assert put.returncode == 0, put.stderr
    get = weft("kv", "get", "app/color", "--address", server.url, token=server.token)
    assert get.stdout == "blue"
    listing = weft("kv", "list", "app/", "--address", server.url, token=server.token)
    assert listing.stdout.split() == ["app/color"]
    weft("kv", "delete", "app/color", "--address", server.url, token=server.token)
    missing = weft("kv", "get", "app/color", "--address", server.url, token=server.token)
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_token_commands(server: WeftServer) -> None:
    created = weft(
        "token",
        "create",
        "--role",
        "agent",
        "--node",
        "vm-9",
        "-o",
        "json",
        "--address",
        server.url,
        token=server.token,
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert token["secret"].startswith("weft_") and token["node"] == "vm-9"
    me = weft("token", "self", "-o", "json", "--address", server.url, token=token["secret"])
    assert json.loads(me.stdout)["role"] == "agent"
    listing = weft("token", "list", "--address", server.url, token=server.token)
    assert token["accessor"] in listing.stdout and token["secret"] not in listing.stdout
    revoked = weft(
        "token", "revoke", token["accessor"], "--address", server.url, token=server.token
    )
    assert revoked.returncode == 0
    refused = weft("token", "self", "--address", server.url, token=token["secret"])
    assert refused.returncode == 1 and "not recognised" in refused.stderr


def test_errors_are_clear(server: WeftServer, tmp_path) -> None:
    no_server = weft("services", "--address", "http://127.0.0.1:1", token=server.token)
    assert no_server.returncode == 1
    assert "weft server" in no_server.stderr and "127.0.0.1:1" in no_server.stderr
    refused = weft("services", "--address", server.url)  # no token, no anonymous reads
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("service: web\nport: [\n")
    invalid = weft("service", "register", str(bad), "--address", server.url, token=server.token)
    assert invalid.returncode == 65 and "bad.yaml" in invalid.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"service": "web", "port": 70000}')
    rejected = weft("service", "register", str(wrong), "--address", server.url, token=server.token)
    assert rejected.returncode == 1 and "1-65535" in rejected.stderr


def test_server_refuses_bad_configuration_with_exit_64(tmp_path) -> None:
    cases = [
        (["--listen", "nowhere"], "listen"),
        (["--etcd-prefix", "weft"], "etcd_prefix"),
        (["--etcd-endpoints", "ftp://x"], "etcd_endpoints"),
        (["--tls-cert-file", "/x.pem"], "tls_key_file"),
        (["--max-body-bytes", "lots"], "max_body_bytes"),
    ]
    for args, field in cases:
        result = weft("server", *args)
        assert result.returncode == 64, (args, result.stderr)
        assert field in result.stderr
    config = tmp_path / "server.toml"
    config.write_text('listen = "127.0.0.1:0"\nlisten_port = 3\n')
    result = weft("server", "--config", str(config))
    assert result.returncode == 64 and "listen_port" in result.stderr
    env = weft("server", env={"WEFT_SERVER_REAP_INTERVAL": "-1"})
    assert env.returncode == 64 and "WEFT_SERVER_REAP_INTERVAL" in env.stderr


def test_help_texts() -> None:
    for args in (
        ["--help"],
        ["server", "--help"],
        ["service", "register", "--help"],
        ["token", "create", "--help"],
        ["kv", "--help"],
    ):
        result = weft(*args)
        assert result.returncode == 0, args
        assert "usage: weft" in result.stdout
    assert "WEFT_SERVER_LISTEN" in weft("server", "--help").stdout


def test_version_names_the_installed_release() -> None:
    from importlib.metadata import version

    result = weft("version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"weft {version('weft')} ")
