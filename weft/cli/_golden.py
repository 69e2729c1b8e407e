"""What `weft stat`, `weft routes` and `weft edges` share: flags, where the numbers come from
(the servers' `/v1/metrics/*`, or Prometheus with `--prometheus URL`) and how they print."""

from __future__ import annotations

import argparse
import math
from typing import Any

import httpx
import trio

from . import _promql
from ._client import add_client_flags, call
from ._output import CommandError, add_output_flag, print_json, print_table


def add_view_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--window",
        default="1m",
        metavar="DURATION",
        help="the window the numbers cover: 10s to 1h [default: 1m]",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="answer from this Prometheus (its HTTP API, PromQL rate() over the window) "
        "instead of the servers",
    )
    add_output_flag(parser)
    add_client_flags(parser)


def window_seconds(raw: str) -> float:
    from registry.validation import InvalidInput, parse_duration

    try:
        seconds = parse_duration(raw, "window")
    except InvalidInput as exc:
        raise CommandError(f"--window: {exc.message.partition(': ')[2]}", 64) from None
    if not 10 <= seconds <= 3600:
        raise CommandError(f"--window: {raw!r} is outside 10s-1h", 64)
    return seconds


def fetch(args: argparse.Namespace, view: str, **params: str | None) -> dict[str, Any]:
    """The view's document ({"window_seconds", "rows", "source"}) from the servers or
    Prometheus."""
    window = window_seconds(args.window)
    if args.prometheus:
        return from_prometheus(args.prometheus, view, window, **params)
    clean = {k: v for k, v in params.items() if v is not None}
    doc: dict[str, Any] = call(
        args, lambda client: client.metrics(view, window=args.window, **clean)
    )
    doc["source"] = "weft"
    return doc


def from_prometheus(url: str, view: str, window: float, **params: str | None) -> dict[str, Any]:
    plan = _promql.plan(
        "stat" if view == "stat" else view,
        window,
        service=params.get("service"),
        to=params.get("to"),
        frm=params.get("from"),
        by_instance=params.get("by") == "instance",
    )

    async def run() -> dict[str, list[dict[str, Any]]]:
        answers: dict[str, list[dict[str, Any]]] = {}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            for name, query in plan.queries.items():
                resp = await http.get(url.rstrip("/") + "/api/v1/query", params={"query": query})
                body = resp.json()
                if resp.status_code != 200 or body.get("status") != "success":
                    raise CommandError(
                        f"Prometheus refused {query!r}: {body.get('error', resp.status_code)}"
                    )
                answers[name] = body["data"]["result"]
        return answers

    try:
        answers = trio.run(run)
    except (httpx.HTTPError, ValueError) as exc:
        raise CommandError(f"cannot query Prometheus at {url}: {exc}") from None
    return {
        "window_seconds": window,
        "rows": _promql.rows(plan, answers, window),
        "source": "prometheus",
        "queries": plan.queries,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ms(row: dict[str, Any], q: str) -> str:
    latency = row.get("latency_ms") or {}
    value = latency.get(q)
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def golden(row: dict[str, Any]) -> list[str]:
    """SUCCESS, RPS, P50, P95, P99 cells of a row."""
    rps = row.get("rps") or 0.0
    return [
        _pct(row.get("success_rate")),
        f"{rps:.1f}" if rps >= 1 else f"{rps:.2f}",
        _ms(row, "p50"),
        _ms(row, "p95"),
        _ms(row, "p99"),
    ]


GOLDEN = ("SUCCESS", "RPS", "P50", "P95", "P99")


def stat_table(
    doc: dict[str, Any], *, by_instance: bool = False, edges: bool = False
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """`weft stat`'s headers and rows for a stat view (per service or instance, or, for a
    `?to=`/`?from=` view, per caller and callee); `weft dev`'s live table uses it too."""
    rows: list[list[Any]] = []
    if edges:
        for r in doc["rows"]:
            rows.append([r.get("from"), r.get("to"), *golden(r)])
        return ("FROM", "TO", *GOLDEN), rows
    name = ("SERVICE", "INSTANCE") if by_instance else ("SERVICE",)
    for r in doc["rows"]:
        who = [r.get("service"), r.get("instance")] if by_instance else [r.get("service")]
        meshed = f"{r.get('proxies', 0)}/{r['instances']}" if "instances" in r else "-"
        rows.append([*who, meshed, *golden(r), r.get("tcp_connections", 0)])
    return (*name, "MESHED", *GOLDEN, "TCP_CONN"), rows


def show(
    args: argparse.Namespace, doc: dict[str, Any], headers: tuple[str, ...], rows: list[list[Any]]
) -> int:
    if args.output == "json":
        print_json(doc)
        return 0
    if not rows:
        print(f"no traffic in the last {doc['window_seconds']:g}s")
        return 0
    print_table(headers, rows)
    return 0
