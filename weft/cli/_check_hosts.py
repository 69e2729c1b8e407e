"""`weft check`'s verdicts on the hosts, from their agents' reports: agents connected, clocks,
proxies on their latest snapshot, certificates within their renewal window. Pure."""

from __future__ import annotations

from ._check_facts import Limits, MeshFacts
from ._check_lines import Line, count, duration, fail, ok, warn

RENEW_BY = 0.90  # agents renew between 60% and 90% of a certificate's life


def agents(facts: MeshFacts) -> list[Line]:
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
                f"{count(facts.agents, 'agent')} connected, leases alive, synced recently",
            )
        )
    return lines


def clocks(facts: MeshFacts, limits: Limits) -> list[Line]:
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
                f"{count(facts.agents, 'host')} within {worst:.2f}s of the "
                f"servers (bound {limits.max_skew:g}s)",
            )
        )
    return lines


def proxies(facts: MeshFacts, limits: Limits) -> list[Line]:
    lines = []
    total = 0
    for a in facts.agents:
        node = a.get("node")
        for p in a.get("proxies") or ():
            total += 1
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
    if not lines and total:
        lines.append(
            ok(
                "proxies",
                f"{count(range(total), 'proxy', 'proxies')} ready on their latest snapshot",
            )
        )
    return lines


def certificates(facts: MeshFacts) -> list[Line]:
    lines = []
    total = 0
    next_renewal: float | None = None
    for a in facts.agents:
        node = a.get("node")
        for c in a.get("certificates") or ():
            total += 1
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
    if not lines and total:
        when = (
            f"; next renewal in {duration(max(0.0, next_renewal - facts.now))}"
            if next_renewal
            else ""
        )
        lines.append(
            ok(
                "certificates",
                f"{count(range(total), 'certificate')} within their renewal window{when}",
            )
        )
    return lines
