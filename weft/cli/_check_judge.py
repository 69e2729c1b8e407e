"""`weft check`'s verdicts: facts gathered from the servers in, lines out. Pure (no I/O, no
clock: `now` is the answering server's clock), so every verdict is tested without a mesh."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._check_lines import Line, duration, fail, ok, warn

QUOTA_WARN = 0.70  # as the server's own health warning (registry/_etcd_upkeep.py)
RENEW_BY = 0.90  # agents renew between 60% and 90% of a certificate's life


@dataclass(frozen=True)
class Limits:
    max_skew: float = 2.0  # seconds between a host's clock and a server's
    ca_expiry: float = 30 * 86400.0  # a root or intermediate closer to its end than this fails
    snapshot_lag: float = 10.0  # seconds a proxy may take to apply its latest snapshot


@dataclass
class ServerView:
    """One server, asked directly (`error` says why it could not be)."""

    url: str
    error: str = ""
    health: dict[str, Any] | None = None
    roots: list[str] | None = None  # root fingerprints it serves
    intention_default: str | None = None
    clock_offset: float | None = None  # its clock minus ours, at the request's midpoint


@dataclass
class MeshFacts:
    now: float
    servers: list[ServerView]
    announced: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    agent_nodes: set[str] = field(default_factory=set)  # nodes with agent-registered instances
    roots: dict[str, Any] | None = None  # GET /v1/ca/roots
    ca_status: dict[str, Any] | None = None  # GET /v1/ca/status
    unreadable: dict[str, str] = field(default_factory=dict)  # what could not be read, and why


def judge(facts: MeshFacts, limits: Limits) -> list[Line]:
    answering = [s for s in facts.servers if s.health is not None]
    lines = [*_etcd(answering), *_servers(facts, answering, limits)]
    if not answering:
        return lines  # nothing else can be known
    lines += _ca(facts, limits)
    lines += _agents(facts)
    lines += _clocks(facts, answering, limits)
    lines += _proxies(facts, limits)
    lines += _certificates(facts)
    return lines


# -- etcd ------------------------------------------------------------------------------------


def _etcd(answering: list[ServerView]) -> list[Line]:
    if not answering:
        return []  # the servers line says no server answered; nothing is known of etcd
    lines = []
    cut_off = [s for s in answering if s.health and s.health.get("status") != "ok"]
    for s in cut_off:
        assert s.health is not None
        reason = s.health.get("reason") or s.health.get("status")
        lines.append(
            fail(
                "etcd",
                f"unreachable or lagging from server {s.url} ({reason})",
                "start etcd, or fix etcd_endpoints in that server's server.toml "
                "(`etcdctl endpoint health` on the server host)",
            )
        )
    healthy = [s for s in answering if s not in cut_off]
    if not healthy:
        return lines
    revisions = sorted(int(s.health.get("revision", 0)) for s in healthy if s.health)
    if not cut_off:
        lines.append(
            ok("etcd", f"healthy as seen by {_count(healthy, 'server')} (revision {revisions[-1]})")
        )
    report = next(
        (s.health.get("etcd") for s in healthy if s.health and s.health.get("etcd")), None
    )
    if isinstance(report, dict):
        lines += _quota(report)
    return lines


def _quota(report: dict[str, Any]) -> list[Line]:
    lines = []
    for alarm in report.get("alarms") or ():
        lines.append(
            fail(
                "etcd quota",
                f"etcd raised an alarm: {alarm}; it refuses writes",
                "compact, defragment and `etcdctl alarm disarm` (docs/operations.md, "
                '"If the quota was hit")',
            )
        )
    size, quota = int(report.get("db_size_bytes", 0)), int(report.get("quota_bytes", 0))
    if not quota:
        lines.append(
            warn(
                "etcd quota",
                f"database {_bytes(size)}, quota unknown",
                "set etcd_quota_bytes in server.toml to etcd's --quota-backend-bytes",
            )
        )
    elif size >= QUOTA_WARN * quota:
        lines.append(
            warn(
                "etcd quota",
                f"database is {size / quota:.0%} of its {_bytes(quota)} quota",
                "compact and defragment etcd before it refuses writes (docs/operations.md)",
            )
        )
    elif not lines:
        lines.append(ok("etcd quota", f"{size / quota:.0%} of {_bytes(quota)} used"))
    return lines


# -- servers ---------------------------------------------------------------------------------


def _servers(facts: MeshFacts, answering: list[ServerView], limits: Limits) -> list[Line]:
    lines = []
    for s in facts.servers:
        if s.health is None:
            lines.append(
                fail(
                    "servers",
                    f"{s.url} does not answer ({s.error})",
                    "start weft-server there (`systemctl status weft-server`), or fix --address",
                )
            )
    asked = {s.url for s in facts.servers}
    for record in facts.announced:
        name = record.get("url") or record.get("identity")
        if record.get("url") in asked:
            continue  # judged above from its own answer
        stale = record.get("stale")
        if stale:
            lines.append(
                fail(
                    "servers",
                    f"{name} announced that its view of etcd is stale ({stale})",
                    "check that server's access to etcd (`journalctl -u weft-server`)",
                )
            )
    if not answering:
        return lines
    defaults = {str(s.intention_default) for s in answering if s.intention_default is not None} | {
        str(r["intention_default"]) for r in facts.announced if r.get("intention_default")
    }
    if len(defaults) > 1:
        lines.append(
            fail(
                "servers",
                f"servers disagree on the intention default ({', '.join(sorted(defaults))})",
                "set the same intention_default in every server.toml and restart them",
            )
        )
    root_sets = {tuple(sorted(s.roots)) for s in answering if s.roots is not None}
    if len(root_sets) > 1:
        by_url = "; ".join(f"{s.url}: {len(s.roots or ())} roots" for s in answering)
        lines.append(
            fail(
                "servers",
                f"servers serve different CA roots ({by_url})",
                "a server whose view is stale lags behind; check its etcd access and logs",
            )
        )
    offsets = [s.clock_offset for s in answering if s.clock_offset is not None]
    if len(offsets) > 1 and max(offsets) - min(offsets) > limits.max_skew:
        lines.append(
            fail(
                "clock",
                f"the servers' clocks differ by {max(offsets) - min(offsets):.1f}s "
                f"(bound {limits.max_skew:g}s)",
                "synchronise the server hosts' clocks (chrony or systemd-timesyncd)",
            )
        )
    if not any(line.status == "fail" for line in lines):
        known = len({s.url for s in facts.servers} | {str(r.get("url")) for r in facts.announced})
        agreed = ", ".join(
            part
            for part in (
                "CA roots" if root_sets else "",
                f"intention default {next(iter(defaults))}" if defaults else "",
            )
            if part
        )
        lines.append(
            ok(
                "servers",
                f"{known} known, {len(answering)} answer"
                + (f"; agree on {agreed}" if agreed else ""),
            )
        )
    return lines


# -- the CA ----------------------------------------------------------------------------------


def _ca(facts: MeshFacts, limits: Limits) -> list[Line]:
    if facts.roots is None:
        why = facts.unreadable.get("roots", "no server answered")
        return [
            fail(
                "ca",
                f"cannot read the trust bundle ({why})",
                "initialise the CA with `weft ca init --trust-domain ...` (docs/ca.md)",
            )
        ]
    lines = []
    active = [r for r in facts.roots.get("roots", []) if r.get("active")]
    for root in active:
        lines.append(
            _expiry(
                "ca root",
                f"root {root.get('name') or root.get('id')}",
                root.get("not_after"),
                facts.now,
                limits,
                "rotate the root before it ends: `weft ca rotate` (docs/ca.md)",
            )
        )
    if facts.ca_status is not None:
        lines.append(
            _expiry(
                "ca intermediate",
                "intermediate",
                facts.ca_status.get("intermediate_not_after"),
                facts.now,
                limits,
                "rotate to a new intermediate: `weft ca rotate` (docs/ca.md)",
            )
        )
    elif "ca_status" in facts.unreadable:
        lines.append(
            warn(
                "ca intermediate",
                f"cannot read the CA status ({facts.unreadable['ca_status']})",
                "give `weft check` a token that may read (--token)",
            )
        )
    return lines


def _expiry(check: str, what: str, not_after: Any, now: float, limits: Limits, fix: str) -> Line:
    try:
        # the CA's display format ("2036-12-02 07:58:10 UTC"), or ISO 8601
        text = str(not_after).replace(" UTC", "+00:00").replace("Z", "+00:00")
        end = datetime.fromisoformat(text).timestamp()
    except ValueError:
        return fail(check, f"{what} has no readable expiry ({not_after!r})", fix)
    left = end - now
    if left <= 0:
        return fail(check, f"{what} expired {duration(left)} ago ({not_after})", fix)
    if left < limits.ca_expiry:
        return fail(
            check,
            f"{what} expires in {duration(left)} ({not_after}), within the "
            f"{duration(limits.ca_expiry)} threshold",
            fix,
        )
    return ok(check, f"{what} valid until {not_after} (in {duration(left)})")


# -- agents, clocks, proxies, certificates -------------------------------------------------


def _agents(facts: MeshFacts) -> list[Line]:
    if "agents" in facts.unreadable:
        return [
            fail(
                "agents",
                f"cannot read the agents' reports ({facts.unreadable['agents']})",
                "give `weft check` a token that may read (--token)",
            )
        ]
    lines = []
    reported = {a.get("node") for a in facts.agents}
    for missing in sorted(facts.agent_nodes - reported):
        lines.append(
            fail(
                "agents",
                f"node {missing} has agent-registered instances but its agent does not report",
                f"upgrade weft-agent on {missing}, or check it (`systemctl status weft-agent`)",
            )
        )
    for a in facts.agents:
        node = str(a.get("node"))
        age = float(a.get("age_seconds", 0))
        interval = float(a.get("report_interval") or 10.0)
        sync_interval = float(a.get("sync_interval") or 60.0)
        journal = f"see `journalctl -u weft-agent` on {node}"
        if not a.get("lease_alive", True):
            lines.append(
                fail(
                    "agents",
                    f"{node}: its lease has expired (last report {duration(age)} ago)",
                    f"start weft-agent on {node}; {journal}",
                )
            )
        elif age > 3 * interval + 5:
            lines.append(
                fail(
                    "agents",
                    f"{node}: no report for {duration(age)} (expected every {duration(interval)})",
                    f"is weft-agent on {node} hung? {journal}",
                )
            )
        elif not a.get("connected", True):
            lines.append(
                fail(
                    "agents",
                    f"{node}: its agent cannot reach the servers",
                    f"check its `servers` setting and the network; {journal}",
                )
            )
        elif float(a.get("last_sync_seconds", 0)) > 2 * sync_interval + 30:
            lines.append(
                fail(
                    "agents",
                    f"{node}: last full sync "
                    f"{duration(float(a['last_sync_seconds']))} ago "
                    f"(every {duration(sync_interval)} expected)",
                    journal,
                )
            )
    if not lines:
        if not facts.agents:
            return [
                warn(
                    "agents",
                    "no agent reports: no host has joined the mesh",
                    "install weft-agent on each host (docs/operations.md)",
                )
            ]
        lines.append(
            ok(
                "agents",
                f"{_count(facts.agents, 'agent')} connected, leases alive, synced recently",
            )
        )
    return lines


def _clocks(facts: MeshFacts, answering: list[ServerView], limits: Limits) -> list[Line]:
    lines = []
    worst = 0.0
    for a in facts.agents:
        offset = float(a.get("clock_offset_seconds", 0.0))
        worst = max(worst, abs(offset))
        if abs(offset) > limits.max_skew:
            side = "ahead of" if offset > 0 else "behind"
            server = f"the server at {a['server']}" if a.get("server") else "the servers"
            lines.append(
                fail(
                    "clock",
                    f"host {a.get('node')}'s clock is {abs(offset):.1f}s {side} {server} "
                    f"(bound {limits.max_skew:g}s)",
                    f"synchronise {a.get('node')}'s clock (chrony or systemd-timesyncd; "
                    "`timedatectl status`)",
                )
            )
    if not lines and facts.agents:
        lines.append(
            ok(
                "clock",
                f"{_count(facts.agents, 'host')} within {worst:.2f}s of the "
                f"servers (bound {limits.max_skew:g}s)",
            )
        )
    return lines


def _proxies(facts: MeshFacts, limits: Limits) -> list[Line]:
    lines = []
    count = 0
    for a in facts.agents:
        node = a.get("node")
        for p in a.get("proxies") or ():
            count += 1
            name = f"{p.get('service') or p.get('id')} on {node}"
            version, applied = p.get("version"), p.get("applied_version") or 0
            if not p.get("running", True):
                lines.append(
                    fail(
                        "proxies",
                        f"{name} is not running",
                        f"the agent restarts it; see `journalctl -u weft-agent` on "
                        f"{node} for why it exits",
                    )
                )
            elif p.get("refused"):
                still = f"still serving v{applied}" if applied else "serving nothing"
                lines.append(
                    fail(
                        "proxies",
                        f"{name} refused snapshot v{version}: {p['refused']} ({still})",
                        f"fix what the refusal names; `weft agent status` on {node}",
                    )
                )
            elif applied != version and float(p.get("pending_seconds", 0)) > limits.snapshot_lag:
                lines.append(
                    fail(
                        "proxies",
                        f"{name} has not applied snapshot v{version} for "
                        f"{duration(float(p['pending_seconds']))} "
                        f"(applied v{applied})",
                        f"is the proxy hung? `weft agent status` on {node}",
                    )
                )
    if not lines and count:
        lines.append(
            ok(
                "proxies",
                f"{_count(range(count), 'proxy', 'proxies')} ready on their latest snapshot",
            )
        )
    return lines


def _certificates(facts: MeshFacts) -> list[Line]:
    lines = []
    count = 0
    next_renewal: float | None = None
    for a in facts.agents:
        node = a.get("node")
        for c in a.get("certificates") or ():
            count += 1
            start, end = float(c.get("not_before", 0)), float(c.get("not_after", 0))
            name = f"certificate of {c.get('service')} on {node}"
            fix = (
                f"the agent on {node} cannot renew: can it reach a server with a CA? "
                f"`journalctl -u weft-agent` on {node}"
            )
            if end <= facts.now:
                lines.append(
                    fail("certificates", f"{name} expired {duration(end - facts.now)} ago", fix)
                )
            elif start and facts.now >= start + RENEW_BY * (end - start):
                lines.append(
                    fail(
                        "certificates",
                        f"{name} is past its renewal window (expires "
                        f"in {duration(end - facts.now)})",
                        fix,
                    )
                )
            else:
                renew = float(c.get("renew_at") or 0)
                if renew and (next_renewal is None or renew < next_renewal):
                    next_renewal = renew
    if not lines and count:
        when = (
            f"; next renewal in {duration(max(0.0, next_renewal - facts.now))}"
            if next_renewal
            else ""
        )
        lines.append(
            ok(
                "certificates",
                f"{_count(range(count), 'certificate')} within their renewal window{when}",
            )
        )
    return lines


# -- wording ---------------------------------------------------------------------------------


def _count(items: Any, one: str, many: str = "") -> str:
    n = len(items)
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
