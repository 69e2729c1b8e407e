"""`weft check`: gather what the servers know (each server asked directly, every other fact
through the first one that answers), then judge it (`_check_judge`).

Everything comes over the servers' HTTP APIs: `/v1/weft/health`, `/v1/weft/servers`,
`/v1/ca/roots`, `/v1/ca/status`, `/v1/intentions`, `/v1/registry/agents` (what each host's
agent reports: its clock, proxies and certificates) and `/v1/registry/instances`.
"""

from __future__ import annotations

import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from ._check_facts import MeshFacts, ServerView

TIMEOUT = 5.0


def _error(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__context__ or exc.__cause__
        if cause is not None and str(cause):
            text = str(cause)
    return text.splitlines()[0][:200] if text else type(exc).__name__


class _Asker:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def get(self, url: str) -> tuple[int, Any]:
        with trio.fail_after(TIMEOUT):
            resp = await self.http.get(url)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        return resp.status_code, body


async def _server(ask: _Asker, url: str) -> ServerView:
    view = ServerView(url)
    try:
        before = time.time()
        status, health = await ask.get(url + "/v1/weft/health")
        after = time.time()
    except (httpx.HTTPError, OSError, trio.TooSlowError) as exc:
        view.error = _error(exc) if not isinstance(exc, trio.TooSlowError) else "timed out"
        return view
    if not isinstance(health, dict) or status not in (200, 503):
        view.error = f"HTTP {status} from /v1/weft/health: is this a weft server?"
        return view
    view.health = health
    if isinstance(health.get("time"), int | float):
        view.clock_offset = float(health["time"]) - (before + after) / 2
    try:
        status, roots = await ask.get(url + "/v1/ca/roots")
        if status == 200 and isinstance(roots, dict):
            view.roots = [str(r.get("fingerprint_sha256")) for r in roots.get("roots", [])]
        status, intentions = await ask.get(url + "/v1/intentions")
        if status == 200 and isinstance(intentions, dict):
            view.intention_default = str(intentions.get("default"))
    except (httpx.HTTPError, OSError, trio.TooSlowError):
        pass  # its health answered: the etcd and servers lines say what matters
    return view


def _refusal(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"HTTP {status}: {body['error'].get('message')}"
    return f"HTTP {status}"


async def gather(addresses: list[str], *, token: str | None, ca_file: str | None) -> MeshFacts:
    headers = {"X-Consul-Token": token} if token else {}
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    urls = [a.rstrip("/") if "://" in a else f"http://{a}" for a in addresses]
    async with httpx.AsyncClient(headers=headers, verify=verify, timeout=TIMEOUT) as http:
        ask = _Asker(http)
        views: dict[str, ServerView] = {}
        async with trio.open_nursery() as nursery:
            for url in urls:

                async def one(url: str = url) -> None:
                    views[url] = await _server(ask, url)

                nursery.start_soon(one)
        servers = [views[u] for u in urls]
        answering = [s for s in servers if s.health is not None]
        facts = MeshFacts(now=time.time(), servers=servers)
        if not answering:
            facts.unreadable["roots"] = "no server answered"
            return facts
        base = answering[0].url
        if isinstance(answering[0].health, dict) and "time" in answering[0].health:
            facts.now = float(answering[0].health["time"])
        await _cluster_facts(ask, base, facts)
        await _more_servers(ask, facts)
    return facts


async def _cluster_facts(ask: _Asker, base: str, facts: MeshFacts) -> None:
    reads = {
        "announced": "/v1/weft/servers",
        "agents": "/v1/registry/agents",
        "instances": "/v1/registry/instances?source=agent",
        "roots": "/v1/ca/roots",
        "ca_status": "/v1/ca/status",
    }
    for name, path in reads.items():
        try:
            status, body = await ask.get(base + path)
        except (httpx.HTTPError, OSError, trio.TooSlowError) as exc:
            facts.unreadable[name] = (
                _error(exc) if not isinstance(exc, trio.TooSlowError) else ("timed out")
            )
            continue
        if status != 200:
            facts.unreadable[name] = _refusal(status, body)
            continue
        if name == "announced":
            facts.announced = list(body.get("servers", []))
        elif name == "agents":
            facts.agents = list(body.get("agents", []))
            if isinstance(body.get("time"), int | float):
                facts.now = float(body["time"])
        elif name == "instances":
            facts.agent_nodes = {str(i.get("node")) for i in body if isinstance(i, dict)}
        elif name == "roots":
            facts.roots = body
        elif name == "ca_status":
            facts.ca_status = body


async def _more_servers(ask: _Asker, facts: MeshFacts) -> None:
    """Ask every announced server we can reach directly too (its address may not be
    reachable from here: behind a load balancer its announcement is judged instead)."""
    asked = {s.url for s in facts.servers}
    urls = []
    for record in facts.announced:
        url = str(record.get("url") or "")
        if not url or url in asked or urlsplit(url).hostname in ("0.0.0.0", "::"):
            continue  # a wildcard address would reach whatever listens on *this* host
        asked.add(url)
        urls.append(url)
    found: dict[str, ServerView] = {}
    async with trio.open_nursery() as nursery:  # together: each may cost the whole timeout
        for url in urls:

            async def one(url: str = url) -> None:
                found[url] = await _server(ask, url)

            nursery.start_soon(one)
    facts.servers += [found[u] for u in urls if found[u].health is not None]
