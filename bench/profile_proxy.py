"""Where a Weft sidecar's CPU goes per request: py-spy on both proxies of bench/proxy.py's path.

    wrk -c32 → weft A (outbound) → mTLS → weft B (inbound) → nginx (1 KB)

The pair runs at saturation for `--duration` seconds while `py-spy record --format raw` samples
each proxy (on-CPU samples only, so shares are shares of CPU time). CPU per request comes from
/proc over the same window; each line's µs is its share of samples times that figure.
Printed per proxy: the innermost frames (self time) and the proxy's own functions with their
callees (inclusive time), as Markdown.

    scripts/bootstrap bench && .venv/bin/python bench/profile_proxy.py [--duration 10]
        [--proxy-args "--workers 1"]   (extra arguments for both `weft proxy` processes)
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._load import requests_in, wrk  # noqa: E402
from bench._pairs import (  # noqa: E402
    Stack,
    certificates,
    cpu_seconds,
    free_port,
    snapshots,
    start_nginx,
    start_weft_pair,
    weft_command,
)


def frames_of(line: str) -> tuple[list[str], int]:
    """py-spy's raw format: `frame;frame;...;frame count`, outermost first."""
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def short(frame: str) -> str:
    """`send_all (proxy/_stream.py:131)` → `send_all (proxy/_stream.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def summarise(raw: Path, us_per_request: float, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = frames_of(line)
        total += count
        own[short(stack[-1])] += count
        for frame in {short(f) for f in stack if "proxy/" in f}:
            inclusive[frame] += count
    if not total:
        return "(no samples)\n"
    out = [f"{total} samples, {us_per_request:.1f} µs of CPU per request\n"]
    out.append("| innermost frame (self) | share | µs / request |\n|---|---:|---:|")
    for frame, count in own.most_common(top):
        share = count / total
        out.append(f"| `{frame}` | {share:.1%} | {share * us_per_request:.1f} |")
    out.append("\n| proxy function (with callees) | share | µs / request |\n|---|---:|---:|")
    for frame, count in inclusive.most_common(top):
        share = count / total
        out.append(f"| `{frame}` | {share:.1%} | {share * us_per_request:.1f} |")
    return "\n".join(out) + "\n"


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process so far."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(line.split(":", 1) for line in status.splitlines() if "ctxt_switches" in line)
    return int(found["voluntary_ctxt_switches"]), int(found["nonvoluntary_ctxt_switches"])


def calls(path: Path, requests: int, top: int) -> str:
    """A cProfile dump as Python calls per request, the most self time first."""
    stats = pstats.Stats(str(path))
    rows = []
    total_calls = 0
    for (file, _, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        total_calls += ncalls
        where = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append((tottime, ncalls, cumtime, f"{func} ({where})"))
    rows.sort(reverse=True)
    out = [
        f"{total_calls / requests:.0f} Python-level calls per request (warm-up included)\n",
        "| function | calls / request | self µs / request (profiled) |",
        "|---|---:|---:|",
    ]
    for tottime, ncalls, _, name in rows[:top]:
        out.append(f"| `{name}` | {ncalls / requests:.2f} | {tottime / requests * 1e6:.1f} |")
    return "\n".join(out) + "\n"


def syscalls(path: Path, requests: int) -> str:
    """`strace -c` output as calls per request."""
    out = ["| system call | calls / request | errors / request |", "|---|---:|---:|"]
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0][0].isdigit() or parts[-1] == "total":
            continue
        calls = int(parts[3])
        errors = int(parts[4]) if len(parts) == 6 else 0
        if calls / requests >= 0.01:
            out.append(f"| {parts[-1]} | {calls / requests:.2f} | {errors / requests:.2f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rate", type=int, default=300, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="lines per table")
    parser.add_argument("--proxy-args", default="", help="extra `weft proxy` arguments")
    parser.add_argument(
        "--strace",
        action="store_true",
        help="count system calls per request with `strace -c` instead of sampling with py-spy "
        "(strace slows the proxies; the counts per request are what it is for)",
    )
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="run the proxies under cProfile: Python function calls and their time per request "
        "(the profiler inflates the times; the call counts are exact)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    sampling = not (args.strace or args.cprofile)
    missing = [
        name
        for name, there in (
            ("wrk", shutil.which("wrk")),
            ("py-spy", Path(spy).exists() or not sampling),
            ("strace", shutil.which("strace") or not args.strace),
        )
        if not there
    ]
    if missing:
        print(f"{', '.join(missing)} missing: run scripts/bootstrap bench", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="weft-profile-"))
    work.chmod(0o755)
    stack = Stack(work)
    try:
        nginx_port = start_nginx(stack, nginx)
        ca, tls = certificates(work)
        b_port, a_port = free_port(), free_port()
        docs = snapshots(ca, tls, a_port=a_port, b_port=b_port, app_port=nginx_port)
        weft = weft_command()
        if args.cprofile:
            weft[1:1] = ["-m", "cProfile", "-o", str(work / "{name}.pstats")]
        weft += shlex.split(args.proxy_args)
        pair = start_weft_pair(
            stack, docs, command=lambda side: [w.replace("{name}", side) for w in weft]
        )
        procs = {"b": pair.b, "a": pair.a}
        wrk(a_port, connections=args.connections, duration=2)  # warm up

        def watcher(name: str, pid: int) -> subprocess.Popen[bytes]:
            if args.strace:
                cmd = ["strace", "-c", "-f", "-o", str(work / f"{name}.strace"), "-p", str(pid)]
                return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cmd = [
                spy, "record", "--format", "raw", "--nonblocking", "--rate", str(args.rate),
                "--duration", str(round(args.duration)), "--pid", str(pid),
                "--output", str(work / f"{name}.raw"),
            ]  # fmt: skip
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        spies = {name: watcher(name, proc.pid) for name, proc in procs.items() if not args.cprofile}
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        cs0 = {name: switches(p.pid) for name, p in procs.items()}
        text = wrk(a_port, connections=args.connections, duration=args.duration)
        cpu1 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        cs1 = {name: switches(p.pid) for name, p in procs.items()}
        for spy_proc in spies.values():
            if args.strace:
                spy_proc.send_signal(signal.SIGINT)
            spy_proc.wait(timeout=args.duration + 30)
        total = requests_in(text)
        rps = total / args.duration
        if args.cprofile:
            pair.stop(timeout=30)  # cProfile writes its figures at exit
        print(
            f"# Profile: {rps:,.0f} req/s through the pair "
            f"({args.duration:g} s, wrk -c{args.connections})\n"
        )
        for name, label in (("a", "proxy A (outbound)"), ("b", "proxy B (inbound)")):
            us = (cpu1[name] - cpu0[name]) / total * 1e6
            print(f"## {label}\n")
            vol, invol = (b - a for a, b in zip(cs0[name], cs1[name], strict=True))
            print(
                f"{us:.1f} µs of CPU per request; per request {vol / total:.2f} voluntary "
                f"context switches (sleeps in epoll_wait), {invol / total:.2f} involuntary\n"
            )
            if args.cprofile:
                print(calls(work / f"{name}.pstats", total, args.top))
            elif args.strace:
                print(syscalls(work / f"{name}.strace", total))
            else:
                print(summarise(work / f"{name}.raw", us, args.top))
        return 0
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    raise SystemExit(main())
