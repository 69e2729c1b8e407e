"""Consul sessions and KV locks on a real `weft server` and etcd, through py-consul."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import consul
import consul.exceptions
import httpx
import pytest

from tests.harness import Proc, WeftServer, assert_documented, spawn, wait_until


def client(server: WeftServer) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=server.token)


def test_session_calls_create_info_list_renew_and_destroy(server: WeftServer) -> None:
    c = client(server)
    sid = c.session.create(name="vault-ha", ttl=30, lock_delay=5, behavior="delete")
    index, info = c.session.info(sid)
    assert int(index) >= 1
    assert info["ID"] == sid and info["Name"] == "vault-ha"
    assert info["Behavior"] == "delete" and info["TTL"] == "30s"
    assert info["LockDelay"] == 5_000_000_000  # nanoseconds, as Go's time.Duration
    assert info["Node"] == "weft"  # the server's node for a non-agent token
    assert info["NodeChecks"] == ["serfHealth"]
    other = c.session.create(name="other")
    _, listed = c.session.list()
    assert [s["ID"] for s in listed] == [sid, other]
    _, on_node = c.session.node("weft")
    assert {s["ID"] for s in on_node} == {sid, other}
    assert c.session.node("elsewhere")[1] == []
    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid
    assert c.session.destroy(sid) is True
    assert c.session.info(sid)[1] is None
    assert c.session.destroy(sid) is True  # already gone: still true, as in Consul
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)


def test_bad_session_bodies_are_refused_naming_the_field(server: WeftServer) -> None:
    for body, field in (
        ({"Behavior": "explode"}, "Behavior"),
        ({"TTL": "5s"}, "TTL"),
        ({"TTL": "soon"}, "TTL"),
        ({"LockDelay": "2m"}, "LockDelay"),
        ({"Checks": ["missing-check"]}, "Checks"),
        ({"Colour": "red"}, "Colour"),
    ):
        answer = httpx.put(server.url + "/v1/session/create", json=body, headers=server.headers())
        assert answer.status_code == 400, body
        assert field in answer.text, answer.text
    assert client(server).session.list()[1] == []


def test_acquire_and_release_follow_consuls_lock_rules(server: WeftServer) -> None:
    c = client(server)
    one, two = c.session.create(lock_delay=0), c.session.create(lock_delay=0)
    assert c.kv.put("service/leader", "one", acquire=one) is True
    _, entry = c.kv.get("service/leader")
    assert entry["Session"] == one and entry["LockIndex"] == 1 and entry["Value"] == b"one"
    assert c.kv.put("service/leader", "two", acquire=two) is False
    assert c.kv.get("service/leader")[1]["Value"] == b"one"
    assert c.kv.put("service/leader", "one again", acquire=one) is True  # the holder updates
    assert c.kv.get("service/leader")[1]["LockIndex"] == 1
    assert c.kv.put("service/leader", "x", release=two) is False  # not the holder
    assert c.kv.put("service/leader", "released", release=one) is True
    _, entry = c.kv.get("service/leader")
    assert "Session" not in entry and entry["LockIndex"] == 1 and entry["Value"] == b"released"
    assert c.kv.put("service/leader", "two", acquire=two) is True
    assert c.kv.get("service/leader")[1]["LockIndex"] == 2
    with pytest.raises(consul.ConsulException, match="invalid session"):
        c.kv.put("service/leader", "x", acquire="00000000-0000-0000-0000-000000000000")
    with pytest.raises(consul.ConsulException, match="not a session ID"):
        c.kv.put("service/leader", "x", acquire="nope")


def test_session_answers_and_a_locked_kv_entry_match_the_openapi_document(
    server: WeftServer,
) -> None:
    # Sessions were routed without a declared answer, and a held key's `Session` field was
    # missing from the declared KV entry.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        created = http.put("/v1/session/create", json={"Name": "doc", "TTL": "30s"})
        assert_documented(doc, "PUT", "/v1/session/create", created)
        sid = created.json()["ID"]
        assert http.put("/v1/kv/doc/leader", params={"acquire": sid}, content=b"x").json()
        entry = http.get("/v1/kv/doc/leader")
        assert entry.json()[0]["Session"] == sid
        assert_documented(doc, "GET", "/v1/kv/{key}", entry)
        for path, template in (
            (f"/v1/session/info/{sid}", "/v1/session/info/{session}"),
            ("/v1/session/node/weft", "/v1/session/node/{node}"),
            ("/v1/session/list", "/v1/session/list"),
        ):
            assert_documented(doc, "GET", template, http.get(path))
        renewed = http.put(f"/v1/session/renew/{sid}")
        assert_documented(doc, "PUT", "/v1/session/renew/{session}", renewed)
        gone = http.put(f"/v1/session/destroy/{sid}")
        assert gone.json() is True
        assert_documented(doc, "PUT", "/v1/session/destroy/{session}", gone)


def test_invalidation_releases_or_deletes_and_lock_delay_holds_the_key(
    server: WeftServer,
) -> None:
    c = client(server)
    keeper = c.session.create(lock_delay=0)
    ephemeral = c.session.create(behavior="delete", lock_delay=0)
    delayed = c.session.create(lock_delay=2)
    assert c.kv.put("kept", "v", acquire=keeper)
    assert c.kv.put("ephemeral", "v", acquire=ephemeral)
    assert c.kv.put("delayed", "v", acquire=delayed)
    for sid in (keeper, ephemeral, delayed):
        c.session.destroy(sid)
    kept = c.kv.get("kept")[1]
    assert kept["Value"] == b"v" and "Session" not in kept
    assert c.kv.put("kept", "x", release=keeper) is False  # a gone session holds nothing
    assert c.kv.get("ephemeral")[1] is None  # behavior=delete takes the key along
    fresh = c.session.create(lock_delay=0)
    assert c.kv.put("kept", "mine", acquire=fresh) is True
    assert c.kv.put("delayed", "mine", acquire=fresh) is False  # within its 2 s lock delay
    wait_until(
        lambda: c.kv.put("delayed", "mine", acquire=fresh), timeout=10, what="the lock delay"
    )
    # An explicit release starts no lock delay, whatever the holder's.
    slow = c.session.create(lock_delay=30)
    assert c.kv.put("slow", "", acquire=slow) and c.kv.put("slow", "", release=slow)
    assert c.kv.put("slow", "mine", acquire=fresh) is True


def test_a_session_dies_with_its_check_and_its_locks_go_with_it(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("db", service_id="db-1", port=5432, check=consul.Check.ttl("60s"))
    with pytest.raises(consul.exceptions.BadRequest, match="critical"):
        c.session.create(checks=["serfHealth", "service:db-1"])
    c.agent.check.ttl_pass("service:db-1")
    sid = c.session.create(checks=["serfHealth", "service:db-1"], lock_delay=0)
    assert c.kv.put("db/leader", "db-1", acquire=sid)
    c.agent.check.ttl_fail("service:db-1")
    wait_until(lambda: c.session.info(sid)[1] is None, timeout=10, what="the invalidation")
    assert "Session" not in c.kv.get("db/leader")[1]


def test_a_blocked_reader_of_a_locked_key_wakes_when_it_is_released(server: WeftServer) -> None:
    c = client(server)
    sid = c.session.create(lock_delay=0)
    assert c.kv.put("k", "v", acquire=sid)
    index, _ = c.kv.get("k")
    c.session.destroy(sid)
    new_index, entry = c.kv.get("k", index=index, wait="10s")
    assert int(new_index) > int(index) and "Session" not in entry
    assert entry["ModifyIndex"] == int(new_index)


def _contender(server: WeftServer, tmp_path: Path, name: str) -> Proc:
    return spawn(
        [
            sys.executable,
            "-m",
            "tests.harness.lock_client",
            server.url,
            server.token or "",
            "locks/leader",
            name,
        ],
        log_path=tmp_path / f"{name}.log",
        cwd=Path(__file__).parents[2],
    )


def _last(proc: Proc, word: str) -> str | None:
    lines = [line.split()[1] for line in proc.log().splitlines() if line.startswith(word + " ")]
    return lines[-1] if lines else None


def _holding(proc: Proc) -> bool:
    held, lost = _last(proc, "HOLD"), _last(proc, "LOST")
    log = proc.log().splitlines()
    if held is None:
        return False
    return lost != held or log.index(f"HOLD {held}") > log.index(f"LOST {lost}")


def test_two_processes_contend_and_the_lock_is_handed_over(
    server: WeftServer, tmp_path: Path
) -> None:
    c = client(server)
    a, b = _contender(server, tmp_path, "a"), _contender(server, tmp_path, "b")
    paused: Proc | None = None
    try:

        def holder() -> Proc | None:
            for proc in (a, b):
                assert proc.alive() or proc is paused, proc.log()[-3000:]
            entry = c.kv.get("locks/leader")[1]
            if entry is None or "Session" not in entry:
                return None
            owners = [p for p in (a, b) if _last(p, "HOLD") == entry["Session"]]
            assert len(owners) <= 1
            return owners[0] if owners else None

        first = wait_until(holder, timeout=15, what="a first holder")
        second = b if first is a else a
        wait_until(lambda: _last(second, "SESSION"), timeout=10, what="the second contender")
        assert not _holding(second)
        assert c.kv.get("locks/leader")[1]["Value"] == (b"a" if first is a else b"b")

        # Handover on session destroy: the waiting contender takes it at once.
        c.session.destroy(_last(first, "HOLD"))
        wait_until(lambda: holder() is second, timeout=10, what="a handover on destroy")
        wait_until(lambda: _last(first, "LOST"), timeout=10, what="the first to notice")

        # Handover on TTL expiry: pause the holder so it stops renewing.
        paused = second
        second.signal(signal.SIGSTOP)
        started = time.monotonic()
        wait_until(lambda: holder() is first, timeout=30, what="a handover on TTL expiry")
        assert time.monotonic() - started > 5  # the session lived out its TTL (10 s)
        assert c.kv.get("locks/leader")[1]["Value"] == (b"a" if first is a else b"b")
    finally:
        for proc in (a, b):
            proc.kill()


def test_two_servers_never_hand_one_lock_to_two_sessions(start_server) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    first = start_server()
    second = start_server(bootstrap=False)
    second.token = first.token
    one, two = client(first), client(second)
    sessions = (one.session.create(lock_delay=0), two.session.create(lock_delay=0))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(15):
            key = f"contest/{round_}"
            results = list(
                pool.map(
                    lambda pair, key=key: pair[0].kv.put(key, "x", acquire=pair[1]),
                    [(one, sessions[0]), (two, sessions[1])],
                )
            )
            assert results.count(True) == 1, (round_, results)
            winner = sessions[results.index(True)]
            # Both servers agree on the holder (each once its watch has the write).
            for c in (one, two):
                wait_until(
                    lambda c=c, key=key, winner=winner: (
                        (c.kv.get(key)[1] or {}).get("Session") == winner
                    ),
                    timeout=5,
                    what="both servers to see the holder",
                )


def test_a_session_dies_with_its_nodes_agent_as_with_serf_health(server: WeftServer) -> None:
    def agent_client(node: str) -> tuple[consul.Consul, str]:
        secret = httpx.post(
            server.url + "/v1/tokens",
            json={"role": "agent", "node": node},
            headers=server.headers(),
        ).json()["secret"]
        url = urlsplit(server.url)
        return consul.Consul(host=url.hostname, port=url.port, token=secret), secret

    ghost, _ = agent_client("ghost")
    with pytest.raises(consul.exceptions.BadRequest, match="serfHealth"):
        ghost.session.create()  # no agent alive on that node
    vm, secret = agent_client("vm-lock")
    lease = httpx.post(
        server.url + "/v1/registry/leases", json={"ttl": 30}, headers={"X-Consul-Token": secret}
    ).json()["id"]  # what a starting `weft agent` does first
    sid = vm.session.create(lock_delay=0)
    assert vm.session.info(sid)[1]["Node"] == "vm-lock"
    operator = client(server)
    assert operator.kv.put("vm/leader", "vm-lock", acquire=sid)
    # The agent dies: its lease goes, and with it every session on its node.
    answer = httpx.delete(
        f"{server.url}/v1/registry/leases/{lease}", headers={"X-Consul-Token": secret}
    )
    assert answer.status_code == 200, answer.text
    wait_until(lambda: operator.session.info(sid)[1] is None, timeout=10, what="invalidation")
    assert "Session" not in operator.kv.get("vm/leader")[1]
    # A session that opts out of serfHealth (NodeChecks: []) is not tied to the node.
    assert operator.session.create(node="elsewhere", checks=[])
