"""A server cut off from etcd says so: 503 health, no known leader, and it refuses a write
with a token it cannot check against etcd (one revoked through another server meanwhile)."""

from __future__ import annotations

import httpx
import trio

from tests.harness import Relay, WeftServer, async_wait_until

BOUND = 2.0


async def test_a_server_cut_off_from_etcd_turns_unhealthy_and_refuses_revoked_tokens(
    etcd, prefix, tmp_path
) -> None:
    relay = Relay("127.0.0.1", etcd.members[0].client_port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(relay.serve)
        direct = WeftServer(etcd.endpoints, prefix, tmp_path).start()
        cut = WeftServer(
            [f"http://127.0.0.1:{port}"],
            prefix,
            tmp_path,
            bootstrap=False,
            args=("--staleness-bound", f"{BOUND}s"),
        )
        try:
            await trio.to_thread.run_sync(cut.start)
            async with httpx.AsyncClient(headers=direct.headers(), timeout=10) as http:
                made = await http.post(direct.url + "/v1/tokens", json={"role": "operator"})
                doomed = made.json()
                as_doomed = {"X-Consul-Token": doomed["secret"]}
                register = {"Name": "web", "ID": "web-1", "Port": 80}
                resp = await http.put(
                    cut.url + "/v1/agent/service/register", json=register, headers=as_doomed
                )
                assert resp.status_code == 200, resp.text
                resp = await http.get(cut.url + "/v1/weft/health")
                assert resp.status_code == 200 and resp.json()["status"] == "ok"
                resp = await http.get(cut.url + "/v1/catalog/services")
                assert resp.headers["X-Consul-KnownLeader"] == "true"
                assert (await http.get(cut.url + "/v1/status/leader")).json() != ""

                relay.pause()  # `cut` loses etcd; `direct` does not
                cut_at = trio.current_time()

                async def unhealthy() -> httpx.Response | None:
                    resp = await http.get(cut.url + "/v1/weft/health")
                    return resp if resp.status_code == 503 else None

                resp = await async_wait_until(unhealthy, timeout=BOUND + 10, what="503 health")
                took = trio.current_time() - cut_at
                assert resp.json()["status"] == "stale" and "etcd" in resp.json()["reason"]
                assert took < BOUND + 5, f"health took {took:.1f}s to turn (bound {BOUND}s)"
                resp = await http.get(cut.url + "/v1/catalog/services")
                assert resp.headers["X-Consul-KnownLeader"] == "false"
                assert (await http.get(cut.url + "/v1/status/leader")).json() == ""
                assert (await http.get(direct.url + "/v1/weft/health")).status_code == 200

                revoked = await http.delete(direct.url + f"/v1/tokens/{doomed['accessor']}")
                assert revoked.status_code == 200
                resp = await http.put(
                    cut.url + "/v1/agent/service/deregister/web-1", headers=as_doomed
                )
                assert resp.status_code == 503 and "cannot verify the token" in resp.text

                relay.resume()
                await async_wait_until(
                    lambda: _status(http, cut.url + "/v1/weft/health", 200),
                    timeout=30,
                    what="health back once etcd is reachable",
                )
                resp = await http.put(
                    cut.url + "/v1/agent/service/deregister/web-1", headers=as_doomed
                )
                assert resp.status_code == 403
            # Nothing the revoked token asked for happened.
            async with httpx.AsyncClient(headers=direct.headers()) as http:
                services = (await http.get(direct.url + "/v1/catalog/services")).json()
                assert "web" in services
        finally:
            cut.stop()
            direct.stop()
            nursery.cancel_scope.cancel()


async def _status(http: httpx.AsyncClient, url: str, status: int) -> bool:
    return (await http.get(url)).status_code == status
