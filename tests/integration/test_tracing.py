"""Tracing in `weft dev`: one request through web → api → prices is one trace whose spans,
exported by the four sidecar hops to an OTLP collector, link parent to child."""

from __future__ import annotations

import os
import re
import secrets
import signal

import httpx

from tests.harness import spawn, wait_until
from tests.harness._otlp_receiver import OtlpReceiver
from tests.harness._procs import weft_command

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _proxy_pids(root: int) -> list[int]:
    """`weft proxy` processes started under `root` (the agent supervises them)."""
    found = []
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"proxy" in argv and b"--snapshot-url" in argv:
            found.append(pid)
    return found


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    assert kb is not None
    return int(kb.group(1)) / 1024


def test_one_request_through_web_api_prices_is_one_trace_with_parent_links(tmp_path) -> None:
    with OtlpReceiver() as receiver:
        dev = spawn(
            [
                *weft_command(),
                "dev",
                "--dir",
                str(tmp_path / "dev"),
                "--port",
                "0",
                "--ready-file",
                str(tmp_path / "ready.json"),
            ],
            log_path=tmp_path / "dev.out",
            env={"WEFT_PROXY_TRACE_COLLECTOR": receiver.url, "WEFT_PROXY_TRACE_SAMPLING": "1"},
        )
        try:
            ready = dev.wait_ready_file(tmp_path / "ready.json", timeout=90)
            # A caller that traces itself: its span is the root, the mesh continues the trace.
            trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
            reply = httpx.get(
                ready["web"], headers={"traceparent": f"00-{trace_id}-{root}-01"}, timeout=10
            )
            assert reply.status_code == 200
            assert reply.json()["upstream"]["upstream"]["service"] == "prices"

            def four_spans():
                mine = [s for s in receiver.spans() if s.trace_id == trace_id]
                return mine if len(mine) >= 4 else None

            mine = wait_until(four_spans, timeout=20, what="the request's four spans")
            assert len(mine) == 4
            by_parent = {s.parent_id: s for s in mine}
            hops = []
            parent = root
            while parent in by_parent:
                span = by_parent[parent]
                hops.append((span.service, span.kind))
                parent = span.span_id
            # web's sidecar called api; api's sidecar served it; api's called prices; ...
            assert hops == [("web", CLIENT), ("api", SERVER), ("api", CLIENT), ("prices", SERVER)]
            web_client, api_server, api_client, prices_server = (
                by_parent[root],
                *(
                    next(s for s in mine if s.service == svc and s.kind == kind)
                    for svc, kind in [("api", SERVER), ("api", CLIENT), ("prices", SERVER)]
                ),
            )
            for span in mine:
                assert span.attributes["http.request.method"] == "GET"
                assert span.attributes["http.response.status_code"] == 200
                assert span.start_ns <= span.end_ns
            assert web_client.attributes["weft.upstream"] == "api"
            assert web_client.attributes["weft.peer.identity"].endswith("/svc/api")
            assert api_server.attributes["weft.peer.identity"].endswith("/svc/web")
            assert api_client.attributes["weft.peer.identity"].endswith("/svc/prices")
            assert prices_server.attributes["weft.peer.identity"].endswith("/svc/api")
            # the client span encloses the server span it caused
            assert web_client.start_ns <= api_server.start_ns <= api_server.end_ns
            assert api_server.end_ns <= web_client.end_ns + 5_000_000  # clocks of one host

            # The load generator sends no context: web's sidecar starts those traces.
            def started_here():
                return [
                    s
                    for s in receiver.spans()
                    if s.service == "web" and s.kind == CLIENT and not s.parent_id
                ]

            started = wait_until(started_here, timeout=20, what="a trace started by a sidecar")
            whole = [s for s in receiver.spans() if s.trace_id == started[0].trace_id]
            assert {s.service for s in whole} <= {"web", "api", "prices"}
            assert receiver.bad == 0
            # the sidecar counts what it exported, on its /metrics
            admin = re.search(r"curl -s (127\.0\.0\.1:\d+)/metrics", dev.log())
            assert admin is not None
            metrics = httpx.get(f"http://{admin.group(1)}/metrics", timeout=10).text
            exported = re.search(r'weft_proxy_spans_total\{result="exported"\} (\S+)', metrics)
            assert exported is not None and float(exported.group(1)) >= 2
            # Tracing every request, a sidecar stays small (the budget: 40 MB).
            pids = _proxy_pids(dev.pid)
            assert len(pids) == 3
            assert max(_rss_mb(pid) for pid in pids) <= 40
        finally:
            if dev.popen.poll() is None:
                dev.popen.send_signal(signal.SIGINT)
            dev.stop()
