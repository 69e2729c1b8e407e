"""Pure rules of mesh identity: token service sets, the agent's screen, exposure parsing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent._exposure import exposed, host_listening, listening
from agent._screen import Screen
from registry._acl import Authorizer, Role, Token, check_service_rules, new_token
from registry._check_reach import CheckReach
from registry._errors import Forbidden, InvalidInput
from registry._model import Instance
from weft.cli.token import service_set

TD = "mesh.test"
WEB = f"spiffe://{TD}/ns/default/svc/web"


def scoped(services: tuple[str, ...] = ("web",), prefixes: tuple[str, ...] = ()) -> Token:
    _, token = new_token(
        "agent", node="a", now=0.0, services=list(services), service_prefix=list(prefixes)
    )
    return token


def test_a_service_set_allows_its_names_and_prefixes_only() -> None:
    token = scoped(("web",), ("shop-",))
    assert [token.allows_service(s) for s in ("web", "shop-cart", "webx", "payments")] == [
        True,
        True,
        False,
        False,
    ]
    assert scoped((), ("",)).allows_service("anything")  # Consul's service_prefix ""
    assert not scoped((), ()).allows_service("web")  # an empty set allows nothing


def test_token_records_round_trip_and_old_records_stay_unscoped() -> None:
    token = scoped(("web", "api"), ("pay-",))
    again = Token.from_json(token.to_json())
    assert again == token and again.services == ("api", "web")
    _, legacy = new_token("agent", node="a", now=0.0)
    assert b"services" not in legacy.to_json()
    assert not Token.from_json(legacy.to_json()).scoped
    assert "services" not in legacy.public()


@pytest.mark.parametrize(
    ("services", "prefixes", "field"),
    [
        (["Web"], [], "services[0]"),
        (["web\n"], [], "services[0]"),
        (["web", "a" * 64], [], "services[1]"),
        ([], ["-x"], "service_prefix[0]"),
        ("web", [], "services"),
        ([1], [], "services"),
        (["w"] * 300, [], "services"),
    ],
)
def test_bad_service_sets_are_refused_naming_the_entry(
    services: object, prefixes: object, field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        check_service_rules(services, prefixes)
    assert err.value.field == field


def test_only_agent_tokens_take_a_service_set() -> None:
    with pytest.raises(InvalidInput) as err:
        new_token("adapter", source="k8s/prod", now=0.0, services=["web"])
    assert err.value.field == "services"


def test_the_authorizer_names_the_refused_service_and_warns_once_for_legacy_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    authz = Authorizer(anonymous_reads=False)
    with pytest.raises(Forbidden) as err:
        authz.service(scoped(), "payments", what="register")
    assert "'payments'" in err.value.message and "web" in err.value.message
    _, legacy = new_token("agent", node="a", now=0.0)
    with caplog.at_level(logging.WARNING, logger="weft.registry.acl"):
        for _ in range(3):
            authz.service(legacy, "payments", what="register")
    assert sum("no service set" in r.getMessage() for r in caplog.records) == 1
    strict = Authorizer(anonymous_reads=False, require_agent_services=True)
    with pytest.raises(Forbidden) as err:
        strict.service(legacy, "web", what="register")
    assert "weft token update" in err.value.message
    strict.service(scoped(), "web", what="register")  # scoped tokens are unaffected


def test_adapters_write_only_nodes_holding_nothing_but_their_source() -> None:
    authz = Authorizer(anonymous_reads=False)
    _, adapter = new_token(Role.ADAPTER, source="k8s/prod", now=0.0)
    authz.write_node(adapter, "k8s-1", what="maintenance", sources=frozenset({"k8s/prod"}))
    for sources in (frozenset({"agent"}), frozenset({"agent", "k8s/prod"}), frozenset()):
        with pytest.raises(Forbidden):
            authz.write_node(adapter, "vm-1", what="maintenance", sources=sources)


def test_the_cli_service_set_syntax() -> None:
    assert service_set("web, api,pay-*,*") == (["web", "api"], ["pay-", ""])
    assert service_set("") == ([], [])


def inst(**fields: object) -> dict:
    base = {
        "service": "web",
        "id": "web-1",
        "node": "b",
        "namespace": "default",
        "address": "10.0.0.2",
        "node_address": "10.0.0.2",
        "sidecar_port": 21000,
        "weights": {"passing": 1, "warning": 1},
        "status": "passing",
        "modify_index": 7,
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"identity": f"spiffe://{TD}/ns/default/svc/payments"}, "identity"),
        ({"identity": "x"}, "identity"),
        ({"identity": "spiffe://other.test/ns/default/svc/web"}, "identity"),
        ({"namespace": "Not_A_Label"}, "namespace"),
        ({"address": "", "node_address": ""}, "address"),
        ({"address": "10.0.0.2 evil"}, "address"),
        ({"sidecar_port": 70000}, "port"),
        ({"sidecar_port": "21000"}, "port"),
        ({"weights": {"passing": "lots"}}, "weight"),
        ({"tags": "v1"}, "tags"),
        ({"meta": ["zone", "a"]}, "meta"),
        ({"meta": {"zone": 1}}, "meta"),
    ],
)
def test_the_screen_drops_a_bad_instance_and_keeps_the_rest(bad: dict, reason: str) -> None:
    screen = Screen()
    good = inst(id="web-2", identity=WEB)
    kept = screen.admit("web", [inst(**bad), good, inst(id="plain", sidecar_port=0)], TD)
    assert [i["id"] for i in kept] == ["web-2", "plain"]
    assert kept[0]["identity"] == WEB
    assert screen.dropped == {("web", reason): 1}
    # The same record in every later answer is counted once; a new version again.
    screen.admit("web", [inst(**bad), good], TD)
    assert screen.dropped[("web", reason)] == 1
    screen.admit("web", [inst(**bad, modify_index=8)], TD)
    assert screen.dropped[("web", reason)] == 2
    assert f'weft_agent_instances_dropped_total{{service="web",reason="{reason}"}} 2' in (
        screen.metrics()
    )


def test_the_screen_derives_identities_it_was_not_sent() -> None:
    kept = Screen().admit("web", [inst()], TD)
    assert kept[0]["identity"] == WEB


PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0A00000A:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0A00000A:1F93 0B00000A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 4 1
"""
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0 0
   1: 00000000000000000000000000000000:1F94 00000000000000000000000000000000:0000 0A 0 0
"""


def test_exposure_finds_apps_listening_beyond_loopback(tmp_path: Path) -> None:
    sockets = listening(PROC_TCP.splitlines()[1:]) + listening(PROC_TCP6.splitlines()[1:])
    assert ("127.0.0.1", 8080) in sockets and ("10.0.0.10", 8082) in sockets
    assert ("::1", 8080) in sockets and ("::", 8084) in sockets
    assert all(port != 8083 for _, port in sockets)  # an established connection, not a listener
    assert exposed(sockets, 8080) == []  # loopback only, v4 and v6
    assert exposed(sockets, 8081) == ["0.0.0.0"]
    assert exposed(sockets, 8082) == ["10.0.0.10"]
    assert exposed(sockets, 8084) == ["::"]
    (tmp_path / "tcp").write_text(PROC_TCP)
    assert ("0.0.0.0", 8081) in host_listening(tmp_path)  # no tcp6 file: still read


def test_check_reach_rules() -> None:
    reach = CheckReach.parse(["10.0.0.0/8"])
    remote = Instance(service="w", id="w", node="n", address="192.0.2.5", node_address="192.0.2.9")
    assert reach.problem("192.0.2.5", remote) is None  # its own address
    assert reach.problem("10.3.3.3", remote) is None  # an allowed network
    assert "not this instance's address" in (reach.problem("192.0.2.77", remote) or "")
    assert "loopback" not in (reach.problem("127.0.0.1", remote) or "loopback")
    meta = Instance(service="w", id="w", node="n", address="169.254.169.254", node_address="::1")
    assert "link-local" in (reach.problem("169.254.169.254", meta) or "")
    local = Instance(service="w", id="w", node="n", node_address="127.0.0.1")
    assert reach.problem("127.0.0.1", local) is None and reach.problem("::1", local) is None
    assert CheckReach.parse(["169.254.169.254/32"]).problem("169.254.169.254", meta) is None


def test_an_instance_named_by_host_owns_what_its_name_resolves_to() -> None:
    named = Instance(
        service="w", id="w", node="n", address="web.internal", node_address="192.0.2.9"
    )
    assert CheckReach().problem("198.51.100.4", named) is not None
    assert CheckReach().problem("198.51.100.4", named, ["198.51.100.4"]) is None


def test_check_allow_networks_must_be_networks() -> None:
    from registry._config import ConfigError, ServerConfig

    with pytest.raises(ConfigError) as err:
        ServerConfig(check_allow_networks=("10.0.0.0/8", "not-a-network")).validate()
    assert err.value.field == "check_allow_networks"
