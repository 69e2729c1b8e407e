"""`weft check`'s verdicts: facts gathered from the servers in, lines out. Pure (no I/O, no
clock: `now` is the answering server's clock), so every verdict is tested without a mesh.
The control plane (etcd, servers, CA) is judged here, the hosts in `_check_hosts`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import _check_hosts as hosts
from ._check_facts import Limits as Limits
from ._check_facts import MeshFacts as MeshFacts
from ._check_facts import ServerView as ServerView
from ._check_lines import Line, count, duration, fail, ok, warn

QUOTA_WARN = 0.70  # as the server's own health warning (registry/_etcd_upkeep.py)


def judge(facts: MeshFacts, limits: Limits) -> list[Line]:
    answering = [s for s in facts.servers if s.health is not None]
    lines = [*_etcd(answering), *_servers(facts, answering, limits)]
    if not answering:
        return lines  # nothing else can be known
    lines += _ca(facts, limits)
    lines += hosts.agents(facts)
    lines += hosts.clocks(facts, limits)
    lines += hosts.proxies(facts, limits)
    lines += hosts.certificates(facts)
    return lines


# -- etcd ------------------------------------------------------------------------------------


def _etcd(answering: list[ServerView]) -> list[Line]:
    if not answering:
        return []  # the servers line says no server answered; nothing is known of etcd
    lines = []
    cut_off = [s for s in answering if s.health and s.health.get("status") != "ok"]
    for s in cut_off:
        assert s.health is not None
        reason = str(s.health.get("reason") or s.health.get("status"))
        # The server's own reason says which: etcd silent, or its watch down or behind.
        what = "unreachable from" if "not answered" in reason else "stale on"
        lines.append(
            fail(
                "etcd",
                f"{what} server {s.url} ({reason})",
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
            ok("etcd", f"healthy as seen by {count(healthy, 'server')} (revision {revisions[-1]})")
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
                "initialise the CA (`weft ca init --trust-domain ...`), or give every server "
                "its key-encryption key (--ca-kek-file); docs/ca.md",
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


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
