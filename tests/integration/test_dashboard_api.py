"""What the dashboard stands on, against hostile input: `/ui` serves only its own files with
strict headers; `/v1/metrics/tap` names every bad parameter, and a sidecar admin address that
floods, never ends or sends garbage cannot hold the server past `wait` nor make it keep more
than `max` events; a server with no anonymous reads asks the browser for a token once."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.harness import WeftServer, wait_until

from .test_dashboard_browser import ARGS, CHROMIUM
from .test_golden_metrics_input import SERVER_ARGS, agent_token, lease_of, proxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def started(start_server):
    return start_server(*SERVER_ARGS)


def test_ui_serves_only_its_files_with_strict_headers(started: WeftServer) -> None:
    page = httpx.get(started.url + "/ui")
    assert httpx.get(started.url + "/ui/").content == page.content
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = httpx.get(started.url + "/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for resp in (page, script):
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cache-control"] == "no-cache"
    again = httpx.get(started.url + "/ui/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for bad in ("/ui/nope.js", "/ui/__init__.py", "/ui/..%2f_ui.py", "/ui/%2e%2e/server.py"):
        resp = httpx.get(started.url + bad)
        assert resp.status_code == 404, (bad, resp.status_code)
        assert b"import" not in resp.content
    paths = httpx.get(started.url + "/v1/openapi.json").json()["paths"]
    assert {"/ui", "/ui/{name}", "/v1/metrics/tap"} <= set(paths)


def test_tap_names_each_bad_parameter(started: WeftServer) -> None:
    for query, field in (
        ("", "service"),
        ("service=Bad%20Name", "service"),
        ("service=api&instance=a%20b", "instance"),
        ("service=api&wait=NaN", "wait"),
        ("service=api&wait=11s", "wait"),
        ("service=api&wait=0", "wait"),
        ("service=api&max=0", "max"),
        ("service=api&max=501", "max"),
        ("service=api&max=1e3", "max"),
    ):
        resp = httpx.get(f"{started.url}/v1/metrics/tap?{query}", headers=started.headers())
        assert resp.status_code == 400, (query, resp.text)
        assert resp.json()["error"]["field"] == field, (query, resp.text)
    assert httpx.get(f"{started.url}/v1/metrics/tap?service=api").status_code == 403


class _Flood(BaseHTTPRequestHandler):
    """A "sidecar admin" that streams summaries forever, or one endless line."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        line = json.dumps({"ts": 1.0, "direction": "inbound", "path": "/<b>x</b>"}) + "\n"
        try:
            while True:
                if self.server.endless:  # type: ignore[attr-defined]
                    self.wfile.write(b"x" * 4096)
                else:
                    self.wfile.write(line.encode() * 50)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def _flood(endless: bool) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flood)
    httpd.daemon_threads = True
    httpd.endless = endless  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_tap_is_bounded_against_a_flooding_or_garbage_sidecar(started: WeftServer) -> None:
    flood, endless = _flood(False), _flood(True)
    try:
        headers = agent_token(started, "vm-t")
        lease = lease_of(started, headers)
        admins = [f"127.0.0.1:{flood.server_port}", f"127.0.0.1:{endless.server_port}"]
        body = {
            "lease": lease,
            "proxies": [
                proxy(instance="api-1", admin=admins[0]),
                proxy(instance="api-2", admin=admins[1]),
            ],
        }
        resp = httpx.post(started.url + "/v1/metrics/push", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        wait_until(
            lambda: (
                len(
                    httpx.get(
                        started.url + "/v1/metrics/proxies", headers=started.headers()
                    ).json()["proxies"]
                )
                == 2
            ),
            timeout=5,
            what="the push in the server's mirror",
        )
        resp = httpx.get(
            started.url + "/v1/metrics/tap",
            params={"service": "api", "wait": "1s", "max": "30"},
            headers=started.headers(),
            timeout=5,
        )
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert resp.elapsed.total_seconds() < 3  # the flood never ends; `wait` does
        assert len(doc["events"]) == 30 and doc["dropped"] > 0
        assert {e["instance"] for e in doc["events"]} == {"api-1"}
        assert doc["unreachable"] == ["api-2"]  # one endless line is not a tap stream
        assert doc["proxies"] == 2

        # At most 8 taps at once on a server; the ninth is told to come back.
        results: list[int] = []

        def tap() -> None:
            results.append(
                httpx.get(
                    started.url + "/v1/metrics/tap",
                    params={"service": "api", "wait": "2s", "max": "1"},
                    headers=started.headers(),
                    timeout=10,
                ).status_code
            )

        threads = [threading.Thread(target=tap) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results).count(200) == 8 and results.count(429) == 2, results
        assert httpx.get(started.url + "/v1/weft/health").status_code == 200
    finally:
        flood.shutdown()
        endless.shutdown()


def test_a_server_without_anonymous_reads_asks_the_browser_for_a_token_once(
    started: WeftServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(started.url + "/ui")
            page.wait_for_selector("#token-form:not([hidden])")
            assert "token" in page.inner_text("#token-reason")
            page.fill("#token", started.token)
            page.click("#token-form button")
            page.wait_for_selector("#services, main p.empty >> text=no services registered")
            assert page.is_hidden("#token-form")
            assert page.evaluate("sessionStorage.getItem('weft.token')") == started.token
            page.goto(started.url + "/ui#/config")  # a new page load: still has the token
            page.wait_for_selector("text=When none matches a pair")
            page.screenshot(path=tmp_path / "token.png")
        finally:
            browser.close()
