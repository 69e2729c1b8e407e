"""Adapter settings, credentials, object decoding and the probe endpoint's answers."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from k8s_adapter import AdapterSettings, ConfigError
from k8s_adapter._credentials import TokenFileAuth, load
from k8s_adapter._errors import BadObject
from k8s_adapter._objects import ENDPOINT_SLICES, PODS, decode, raw_key
from k8s_adapter._status_http import StatusServer

from weft._settings import SettingsError, load_settings


def settings(**values: object) -> AdapterSettings:
    return load_settings(AdapterSettings, env_prefix="WEFT_K8S_", environ={}, flags=values)


def test_settings_from_env_and_flags_with_defaults() -> None:
    s = load_settings(
        AdapterSettings,
        env_prefix="WEFT_K8S_",
        environ={"WEFT_K8S_CLUSTER": "prod-eu1", "WEFT_K8S_NAMESPACES": "shop,api"},
        flags={"batch_size": "200", "lease_duration": "20s"},
    )
    assert s.source == "k8s/prod-eu1" and s.lease == "weft-k8s-adapter-prod-eu1"
    assert s.namespaces == ("shop", "api") and s.batch_size == 200 and s.lease_duration == 20.0
    assert s.exclude_namespaces == ("kube-system", "kube-public", "kube-node-lease")


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({}, "cluster", "is required"),
        ({"cluster": "Prod"}, "cluster", "DNS label"),
        ({"cluster": "c1", "name_template": "{namespace}"}, "name_template", "must contain"),
        ({"cluster": "c1", "name_template": "{name}_{bogus}"}, "name_template", "template"),
        ({"cluster": "c1", "name_template": "{name}_x"}, "name_template", "not a DNS label"),
        ({"cluster": "c1", "batch_size": "0"}, "batch_size", "1-5000"),
        (
            {"cluster": "c1", "lease_duration": "5s", "renew_deadline": "10s"},
            "lease_duration",
            "longer",
        ),
        (
            {"cluster": "c1", "namespaces": "a", "exclude_namespaces": "a"},
            "exclude_namespaces",
            "both",
        ),
        ({"cluster": "c1", "to_k8s_sources": "k8s/c1"}, "to_k8s_sources", "loop"),
        ({"cluster": "c1", "trust_domain": "Bad Domain"}, "trust_domain", "not valid"),
        ({"cluster": "c1", "registry": "127.0.0.1:8500"}, "registry", "http"),
        ({"cluster": "c1", "health_listen": "nope"}, "health_listen", "host:port"),
    ],
)
def test_bad_settings_name_the_field(values, field, words) -> None:
    with pytest.raises(SettingsError) as err:
        settings(**values)
    assert err.value.field == field
    assert words in str(err.value)


def _kubeconfig(path: Path, cluster: dict, user: dict) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "one",
                "clusters": [{"name": "one", "cluster": cluster}],
                "users": [{"name": "one", "user": user}],
                "contexts": [
                    {
                        "name": "one",
                        "context": {"cluster": "one", "user": "one", "namespace": "team"},
                    }
                ],
            }
        )
    )
    return path


def test_kubeconfig_with_token_ca_data_and_client_cert(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("adapter@example")
    path = _kubeconfig(
        tmp_path / "config",
        {
            "server": "https://k8s.example:6443",
            "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
        },
        {
            "token": "abc",
            "client-certificate-data": base64.b64encode(client.cert_chain_pems[0].bytes()).decode(),
            "client-key-data": base64.b64encode(client.private_key_pem.bytes()).decode(),
        },
    )
    creds = load(str(path))
    assert creds.server == "https://k8s.example:6443" and creds.namespace == "team"
    assert not isinstance(creds.verify, bool)
    assert "context one" in creds.description


def test_kubeconfig_token_file_and_missing_context(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = _kubeconfig(
        tmp_path / "config", {"server": "http://127.0.0.1:1"}, {"tokenFile": "token"}
    )
    creds = load(str(path))
    assert isinstance(creds.auth, TokenFileAuth) and creds.auth.token() == "from-file"
    # Bound service-account tokens rotate: the file is read again once it is old enough.
    (tmp_path / "token").write_text("rotated\n")
    assert creds.auth.token() == "from-file"
    creds.auth.max_age = 0
    assert creds.auth.token() == "rotated"
    with pytest.raises(ConfigError) as err:
        load(str(path), "nope")
    assert err.value.field in ("kube_context", "kubeconfig")


def test_in_cluster_is_preferred_and_kubeconfig_is_the_fallback(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("weft-system")
    (sa / "ca.crt").write_bytes(trustme.CA().cert_pem.bytes())
    env = {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "HOME": str(tmp_path),
    }
    creds = load(service_account_dir=sa, environ=env)
    assert creds.server == "https://10.96.0.1:443" and creds.namespace == "weft-system"
    assert creds.description.startswith("in-cluster")

    with pytest.raises(ConfigError, match="give --kubeconfig"):
        load(service_account_dir=tmp_path / "none", environ={"HOME": str(tmp_path)})
    kube = tmp_path / ".kube"
    kube.mkdir()
    _kubeconfig(kube / "config", {"server": "http://127.0.0.1:1"}, {"token": "t"})
    creds = load(service_account_dir=tmp_path / "none", environ={"HOME": str(tmp_path)})
    assert creds.server == "http://127.0.0.1:1"


def test_decoding_names_what_is_wrong() -> None:
    good = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": []}}
    assert decode(PODS, good).metadata.name == "p"
    cases = [
        ({"kind": "Frobnicator", "metadata": {"name": "x", "namespace": "n"}}, "Frobnicator"),
        ({"metadata": {"namespace": "n"}}, "metadata.name"),
        ({"metadata": {"name": "x"}}, "metadata.namespace"),
        (
            {
                "metadata": {"name": "s", "namespace": "n"},
                "addressType": "IPv4",
                "endpoints": [{"conditions": {}}],
            },
            "addresses",
        ),
        ([1, 2], "JSON object"),
    ]
    for raw, words in cases:
        with pytest.raises(BadObject, match=words):
            decode(ENDPOINT_SLICES if "addressType" in str(raw) else PODS, raw)
    assert raw_key({"metadata": {"name": "x", "namespace": "n"}, "junk": 1}) == ("n", "x")
    assert raw_key({"metadata": "nope"}) is None


def test_probe_answers() -> None:
    ready = {"now": False}
    server = StatusServer(
        ready=lambda: ready["now"],
        status=lambda: {"leader": True},
        metrics=lambda: {
            "weft_x": ("gauge", "x", 1.0),
            "weft_y_total": ("counter", "y", 3.0),
        },
    )
    assert server.respond("GET", "/healthz").status == 200
    assert server.respond("GET", "/readyz").status == 503
    ready["now"] = True
    assert server.respond("GET", "/readyz").status == 200
    assert json.loads(server.respond("GET", "/status").body) == {"leader": True}
    metrics = server.respond("GET", "/metrics").body
    assert b"# TYPE weft_x gauge\nweft_x 1.0\n" in metrics
    assert re.search(rb"# TYPE weft_y(_total)? counter\nweft_y_total 3.0\n", metrics)
    missing = server.respond("GET", "/nope")
    assert missing.status == 404 and b"/healthz" in missing.body
    refused = server.respond("POST", "/readyz")
    assert refused.status == 405 and ("Allow", "GET, HEAD") in refused.headers


async def test_probes_are_served_over_http() -> None:
    server = StatusServer(ready=lambda: True, status=lambda: {"leader": False}, metrics=dict)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server.serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            assert (await http.get("/readyz")).text == "ready\n"
            assert (await http.get("/status")).json() == {"leader": False}
            head = await http.head("/healthz")
            assert head.status_code == 200 and head.content == b""
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert (await stream.receive_some(4096)).startswith(b"HTTP/1.1 400")
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_exec_credential_plugin_is_run_and_cached(tmp_path: Path) -> None:
    import sys

    import httpx
    from k8s_adapter._credentials import ExecAuth

    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os, pathlib\n"
        f"p = pathlib.Path({str(calls)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': os.environ['TOKEN'],"
        " 'expirationTimestamp': '2999-01-01T00:00:00Z'}}))\n"
    )
    path = _kubeconfig(
        tmp_path / "config",
        {"server": "http://127.0.0.1:1"},
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(plugin)],
                "env": [{"name": "TOKEN", "value": "from-plugin"}],
            }
        },
    )
    creds = load(str(path))
    assert isinstance(creds.auth, ExecAuth)
    for _ in range(2):
        flow = creds.auth.async_auth_flow(httpx.Request("GET", "http://127.0.0.1:1/api"))
        request = await flow.__anext__()
        assert request.headers["Authorization"] == "Bearer from-plugin"
    assert calls.read_text() == "x"  # cached until it expires
