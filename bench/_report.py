"""bench/proxy.py's HTTP/1.1 report: the Markdown tables of its runs and the summary lines for
the pairs of paths that ran (medians over the runs; runs are interleaved)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterable

Runs = dict[str, list[dict[str, float]]]


def _added(us: float, base_us: float) -> str:
    return "-" if base_us != base_us else f"{(us - base_us) / 1000:+.3f} ms"  # NaN: no direct


def med(values: list[dict[str, float]], key: str) -> float:
    return statistics.median(v[key] for v in values)


def report(
    args: argparse.Namespace,
    targets: Iterable[str],
    sat: Runs,
    lat: Runs,
    ser: Runs,
    rss: dict[str, tuple[float, float]],
    parse: dict[str, float],
) -> None:
    """`sat`, `lat` and `ser`: each target's saturation, paced and serial runs; `rss`: each
    proxy's (now, peak) MiB; `parse`: µs per head from `parsers()`."""
    targets = list(targets)
    has = set(targets)
    # "added" latencies are against the direct path; without it they are not printed.
    direct50 = med(lat["direct"], "p50_us") if "direct" in has else float("nan")
    direct99 = med(lat["direct"], "p99_us") if "direct" in has else float("nan")
    print()
    print(
        f"## Proxy (bench/proxy.py, {args.repeat} runs of {args.duration:g}s, medians; "
        f"{args.workers} worker(s) per proxy{', pinned' if args.pin else ''})"
    )
    print()
    print(
        "| path | req/s at saturation | CPU s / 1k req (both proxies) | rate paced "
        "| p50 | p99 | added p50 | added p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in targets:
        p50, p99 = med(lat[name], "p50_us"), med(lat[name], "p99_us")
        cpu = med(sat[name], "cpu_per_1k")
        rps, rate = med(sat[name], "rps"), med(lat[name], "rate")
        print(
            f"| {name} | {rps:,.0f} | {cpu:.3f} | {rate:,.0f}/s "
            f"| {p50 / 1000:.3f} ms | {p99 / 1000:.3f} ms "
            f"| {_added(p50, direct50)} | {_added(p99, direct99)} |"
        )
    print()
    print("One connection, one request per millisecond (added = proxied minus direct):")
    print()
    print("| path | p50 | p99 | added p50 | added p99 |")
    print("|---|---:|---:|---:|---:|")
    serial50 = med(ser["direct"], "p50_us") if "direct" in has else float("nan")
    serial99 = med(ser["direct"], "p99_us") if "direct" in has else float("nan")
    for name in targets:
        p50, p99 = med(ser[name], "p50_us"), med(ser[name], "p99_us")
        print(
            f"| {name} | {p50 / 1000:.3f} ms | {p99 / 1000:.3f} ms "
            f"| {_added(p50, serial50)} | {_added(p99, serial99)} |"
        )
    print()
    print("| proxy | RSS now | RSS peak |")
    print("|---|---:|---:|")
    for name, (now, peak) in rss.items():
        print(f"| {name} | {now:.1f} MiB | {peak:.1f} MiB |")
    print()

    def per_run(a: str, b: str) -> tuple[float, str]:
        """Runs are interleaved, so each run's two figures saw the same machine: the median
        of the per-run ratios is steadier than the ratio of the medians."""
        ratios = [x["rps"] / y["rps"] for x, y in zip(sat[a], sat[b], strict=True)]
        return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)

    if {"weft", "haproxy"} <= has:
        ratio_rps, ratios = per_run("weft", "haproxy")
        ratio_cpu = med(sat["weft"], "cpu_per_1k") / med(sat["haproxy"], "cpu_per_1k")
        print(f"Weft/HAProxy throughput ratio: {ratio_rps:.2f} (goal >= 0.6; per run: {ratios})")
        print(f"Weft/HAProxy CPU per request:  {ratio_cpu:.2f}x (goal <= 2x)")
    if {"weft", "haproxy", "direct"} <= has:
        added99 = (med(lat["weft"], "p99_us") - direct99) / 1000
        haproxy99 = (med(lat["haproxy"], "p99_us") - direct99) / 1000
        serial_added99 = (med(ser["weft"], "p99_us") - serial99) / 1000
        print(
            f"Weft added p99 at ~1,000 req/s: {added99:.3f} ms (target < 2 ms; "
            f"HAProxy: {haproxy99:.3f} ms; one connection, 1 req/ms: {serial_added99:.3f} ms)"
        )
    worst_rss = max(peak for name, (_, peak) in rss.items() if name.startswith("weft"))
    print(f"Weft peak RSS per proxy:       {worst_rss:.1f} MiB (target < 40 MiB)")
    if {"weft", "weft-routes"} <= has:
        routes_rps, _ = per_run("weft-routes", "weft")
        routes_added99 = (med(lat["weft-routes"], "p99_us") - med(lat["weft"], "p99_us")) / 1000
        print(
            f"20 routes + retry budget vs no routes: throughput {routes_rps:.2f}x "
            f"(target >= 0.90), paced p99 {routes_added99:+.3f} ms (target <= +0.3 ms)"
        )

    def versus(a: str, b: str) -> str:
        rps, runs = per_run(a, b)
        cpu = med(sat[a], "cpu_per_1k") / med(sat[b], "cpu_per_1k")
        return f"throughput {rps:.2f}x (per run: {runs}), CPU per request {cpu:.2f}x"

    if {"weft", "weft-reactor"} <= has:
        print(f"Reactor vs trio's waits: {versus('weft-reactor', 'weft')}")
    if {"weft", "weft-base"} <= has:
        print(f"This tree vs --base {args.base}: {versus('weft', 'weft-base')}")
    if {"weft-reactor", "haproxy"} <= has:
        print(f"Weft (reactor)/HAProxy: {versus('weft-reactor', 'haproxy')}")
    if {"weft", "weft-traced"} <= has:
        traced_rps, traced_runs = per_run("weft-traced", "weft")
        traced_added99 = (med(lat["weft-traced"], "p99_us") - med(lat["weft"], "p99_us")) / 1000
        print(
            f"Tracing at 1 % vs off: throughput {traced_rps:.2f}x (target >= 0.95; per run: "
            f"{traced_runs}), paced p99 {traced_added99:+.3f} ms"
        )
    print(
        "httptools vs h11 (request + response head, parse + serialize): "
        f"{parse['httptools_request'] + parse['httptools_response']:.1f} µs vs "
        f"{parse['h11_request'] + parse['h11_response']:.1f} µs"
    )
    errors = [n for n, runs in sat.items() if any(r["errors"] for r in runs)]
    errors += [n for n, runs in lat.items() if any(r["errors"] for r in runs)]
    if errors:
        print(f"warning: errors during the runs of {', '.join(sorted(set(errors)))}")
