"""The dashboard at /ui, driven by a real headless Chromium (Debian's `chromium`) against the
demo mesh `weft dev` runs: a real etcd, server, agent, three sidecars and apps, and a load
generator. The pages load with no console error, show the services with their numbers, the
demo's edges and live requests; strings that callers and registrants control (tags, meta, an
intention's description, a request path) render as text, never as markup. `weft dev` itself
prints the dashboard's URL and a live `weft stat` table.

Screenshots go to the test's tmp dir; WEFT_SCREENSHOTS=DIR copies them there as well (that is
how docs/observability/dashboard-*.png were made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.harness import spawn, wait_until
from tests.harness._procs import weft_command

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Each payload, if it ever ran, would set window.__xss.
TAG = "<img src=x onerror=window.__xss='tag'>"
META = "<script>window.__xss='meta'</script>"
DESCRIPTION = "<img src=x onerror=window.__xss='intention'>"
PATH = "/<img/src=x/onerror=window.__xss='path'>"


def _raw_get(port: int, target: str) -> bytes:
    """A request with a target no HTTP client library would send unencoded."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return s.recv(200)


@pytest.fixture
def dev(tmp_path: Path):
    proc = spawn(
        [
            *weft_command(),
            "dev",
            "--dir",
            str(tmp_path / "dev"),
            "--port",
            "0",
            "--ready-file",
            str(tmp_path / "ready.json"),
            "--refresh",
            "1s",
        ],
        log_path=tmp_path / "dev.out",
    )
    try:
        ready = proc.wait_ready_file(tmp_path / "ready.json", timeout=60)
        yield proc, ready
    finally:
        proc.stop()


def test_dashboard_shows_the_demo_mesh_live_and_renders_hostile_strings_as_text(
    dev, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    proc, ready = dev
    url, dashboard = ready["url"], ready["dashboard"]
    token = Path(ready["token_file"]).read_text().strip()
    operator = {"X-Consul-Token": token}
    assert f"Dashboard: {dashboard}" in proc.log()

    # The page's own headers: scripts from this origin only, no sniffing, revalidated.
    page_resp = httpx.get(dashboard)
    assert page_resp.status_code == 200 and "text/html" in page_resp.headers["content-type"]
    csp = page_resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page_resp.headers["x-content-type-options"] == "nosniff"
    assert page_resp.headers["cache-control"] == "no-cache"
    assert "<script>" not in page_resp.text  # no inline script at all: only src= modules
    assert httpx.get(url + "/ui/../operator-token").status_code == 404

    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 720})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Overview: every demo service with non-zero RPS and its health counts.
            page.goto(dashboard)

            def numbers() -> dict[str, list[str]] | None:
                rows = page.eval_on_selector_all(
                    "#services tbody tr",
                    "rows => rows.map(r => [r.dataset.service, ...[...r.cells].map(c => "
                    "c.innerText)])",
                )
                found = {r[0]: r[1:] for r in rows}
                if not {"web", "api", "prices"} <= set(found):
                    return None
                busy = all(float(found[s][6]) > 5 for s in ("api", "prices"))
                return found if busy else None

            found = wait_until(numbers, timeout=30, what="the overview to show the demo's RPS")
            assert found["api"][1] == "1/1" and found["api"][4] == "1/1"  # passing, meshed
            assert found["api"][5] == "100.00%" and found["api"][7].endswith("ms")
            page.screenshot(path=shots / "dashboard-overview.png")

            # Topology: web -> api -> prices, coloured as healthy.
            page.goto(dashboard + "#/topology")
            page.wait_for_selector("#topology g.edge")
            edges = page.eval_on_selector_all(
                "#topology g.edge",
                "gs => gs.map(g => [g.dataset.from, g.dataset.to, g.classList[1]])",
            )
            assert sorted(edges) == [["api", "prices", "good"], ["web", "api", "good"]]
            page.screenshot(path=shots / "dashboard-topology.png")

            # A service page: instances, edges, routes, its identity and intentions.
            page.goto(dashboard + "#/service/api")
            page.wait_for_selector("text=spiffe://dev.weft/ns/default/svc/api")
            body = page.inner_text("main")
            assert "Inbound (callers)" in body and "web" in body and "prices" in body
            assert "weft dev: the demo's call graph" in body
            page.screenshot(path=shots / "dashboard-service.png", full_page=True)

            # Strings an attacker controls: a registrant's tags and meta, an intention's
            # description. They render as the text they are.
            httpx.put(
                url + "/v1/agent/service/register",
                headers=operator,
                json={"Name": "evil", "Port": 9, "Tags": [TAG], "Meta": {"note": META}},
            ).raise_for_status()
            httpx.put(
                url + "/v1/connect/intentions/exact",
                params={"source": "prices", "destination": "web"},
                headers=operator,
                json={"Action": "deny", "Description": DESCRIPTION},
            ).raise_for_status()
            page.goto(dashboard + "#/service/evil")
            page.wait_for_selector("text=Instances")
            assert TAG in page.inner_text("main") and META in page.inner_text("main")
            assert page.eval_on_selector_all("main img, main script", "n => n.length") == 0

            page.goto(dashboard + "#/config")
            page.wait_for_selector(f"text={DESCRIPTION}")

            # Tap and top: live requests, a hostile path among them, shown as text.
            page.goto(dashboard + "#/tap/api")
            page.wait_for_selector("#tap tbody tr")
            upstreams = tomllib.loads((tmp_path / "dev" / "services.d" / "web.toml").read_text())
            local = upstreams["upstreams"][0]["local_port"]

            def tapped() -> bool:
                _raw_get(local, PATH)  # through web's sidecar to api's, mTLS on the way
                return PATH in page.inner_text("#tap")

            wait_until(tapped, timeout=15, what="the hostile path in the tap table")
            assert "spiffe://dev.weft/ns/default/svc/web" in page.inner_text("#tap")
            assert "inbound" in page.inner_text("#top") and "outbound" in page.inner_text("#top")
            assert page.eval_on_selector_all("main img, main script", "n => n.length") == 0
            page.screenshot(path=shots / "dashboard-tap.png")

            assert page.evaluate("window.__xss") is None
        finally:
            browser.close()
    assert errors == []

    # `weft dev` shows `weft stat` live (a plain table per refresh on a log file).
    def table() -> str | None:
        last = proc.log().rpartition("weft stat --window 10s\n")[2]
        return last if "traffic {" in last else None

    last = wait_until(table, timeout=10, what="a stat table with the load generator's count")
    assert re.search(r"^api\s+1/1\s+100\.00%\s+\d+\.\d", last, re.M), last
    assert '"failed": 0' in last

    copy_to = os.environ.get("WEFT_SCREENSHOTS")
    if copy_to:
        for shot in shots.iterdir():
            shutil.copy(shot, Path(copy_to) / shot.name)
    assert json.loads((tmp_path / "ready.json").read_text())["dashboard"] == url + "/ui"
