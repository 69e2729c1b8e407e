#!/usr/bin/env python3
"""Wait until this host's Weft proxies have drained: nothing in flight, nothing new arriving.

Run on the host by the rollout (ansible.builtin.script, the host's own python3, stdlib only)
after the node went into maintenance. It asks the local agent where its proxies' admin
endpoints are, waits --min-wait seconds (peers' agents see the maintenance and their proxies
drop this host), then scrapes each proxy's /metrics until, for --quiet seconds in a row,
no HTTP request is in flight (requests received minus responses sent), no request counter has
moved and no opaque TCP connection is open. It prints one JSON line and exits 0 once drained,
or 3 after --timeout seconds (with what was still busy).

The decisions are pure functions of scraped text (`parse_metrics`, `Busy.of`, `Drain`), so
they are tested without a proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

EXIT_TIMEOUT = 3


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text exposition → {(name, sorted labels): value}. Comments are skipped."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, _, value_text = rest.rpartition("}")
            labels = tuple(sorted(_labels(labels_text)))
        else:
            name, _, value_text = line.partition(" ")
            labels = ()
        try:
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        samples[(name, labels)] = value
    return samples


def _labels(text: str) -> list[tuple[str, str]]:
    out = []
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # past ="
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
            value.append(text[j])
            j += 1
        out.append((key, "".join(value)))
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return out


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _total(samples: Samples, *names: str, **match: str) -> float:
    total = 0.0
    for (name, labels), value in samples.items():
        if name in names and all((k, v) in labels for k, v in match.items()):
            total += value
    return total


@dataclass(frozen=True)
class Busy:
    """What one proxy is doing now, from one scrape."""

    requests: float  # HTTP requests received, ever (all directions)
    in_flight: float  # HTTP requests received but not yet answered
    tcp_open: float  # opaque TCP connections open now

    @classmethod
    def of(cls, samples: Samples) -> Busy:
        requests = _total(samples, "weft_proxy_requests_total", "weft_proxy_requests")
        responses = _total(samples, "weft_proxy_responses_total", "weft_proxy_responses")
        tcp_open = _total(samples, "weft_proxy_open_connections", protocol="tcp")
        return cls(requests, max(0.0, requests - responses), tcp_open)

    def idle(self) -> bool:
        return self.in_flight == 0 and self.tcp_open == 0


@dataclass
class Drain:
    """Quiet for `quiet` seconds in a row across every proxy → drained."""

    quiet: float
    last: dict[str, Busy] = field(default_factory=dict)
    quiet_since: float | None = None

    def observe(self, now: float, scrape: dict[str, Busy]) -> bool:
        moved = any(
            p not in self.last or busy.requests != self.last[p].requests
            for p, busy in scrape.items()
        )
        idle = all(busy.idle() for busy in scrape.values())
        self.last = dict(scrape)
        if moved or not idle:
            self.quiet_since = None
            return False
        if self.quiet_since is None:
            self.quiet_since = now
        return now - self.quiet_since >= self.quiet

    def describe(self) -> dict[str, dict[str, float]]:
        return {
            p: {"in_flight": b.in_flight, "tcp_open": b.tcp_open, "requests": b.requests}
            for p, b in sorted(self.last.items())
        }


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def proxies(agent: str) -> dict[str, str]:
    """{proxy id: admin host:port} of the agent's sidecars that are running."""
    status = json.loads(get(f"http://{agent}/v1/agent/status"))
    out = {}
    for service in status.get("services", []):
        sidecar = service.get("sidecar") or {}
        proxy = sidecar.get("proxy") or {}
        if proxy.get("admin"):
            out[service["id"]] = proxy["admin"]
    return out


def scrape(admins: dict[str, str]) -> dict[str, Busy]:
    out = {}
    for proxy_id, admin in admins.items():
        base = admin if "://" in admin else f"http://{admin}"
        try:
            out[proxy_id] = Busy.of(parse_metrics(get(base + "/metrics").decode()))
        except (OSError, urllib.error.URLError, ValueError):
            continue  # a proxy that is not answering is not serving either
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="127.0.0.1:8501", help="the agent's local API")
    parser.add_argument("--min-wait", type=float, default=3.0, help="seconds to wait first")
    parser.add_argument("--quiet", type=float, default=2.0, help="seconds of quiet needed")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after (seconds)")
    parser.add_argument("--interval", type=float, default=0.25, help="scrape period (seconds)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        admins = proxies(args.agent)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        # No agent answering means no proxies of it serving: nothing to drain.
        admins = {}
        note = f"agent at {args.agent} did not answer ({exc}); nothing to drain"
    else:
        note = f"{len(admins)} proxies"
    time.sleep(args.min_wait)
    drain = Drain(args.quiet)
    drained = False
    while True:
        now = time.monotonic()
        if drain.observe(now, scrape(admins)):
            drained = True
            break
        if now - started >= args.timeout:
            break
        time.sleep(args.interval)
    result = {
        "drained": drained,
        "seconds": round(time.monotonic() - started, 2),
        "note": note,
        "proxies": drain.describe(),
    }
    print(json.dumps(result, sort_keys=True))
    return 0 if drained else EXIT_TIMEOUT


if __name__ == "__main__":
    sys.exit(main())
