"""`weft rollout`: run Weft's playbooks (ansible/) through ansible-runner, host by host, live.

    weft rollout --inventory hosts.yml                   # rolling upgrade (rollout.yml)
    weft rollout --inventory hosts.yml --playbook site.yml --check

Prints one line per host result as it happens (changed, failed, unreachable, retries; ok too
with -v), a table per host at the end, and where ansible-runner kept the run's artifacts (every
event as JSON, stdout, the command line). Exits 0 when every host succeeded; otherwise 2 (a host
failed) or 4 (a host was unreachable), naming each failed host, the task and its message (for a
rollout, the check that did not pass).

The reporting is pure (`Report` takes runner events, `parse_extra_vars` strings), so it is
tested without Ansible; `run` only wires ansible-runner to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from ._output import CommandError

EXIT_FAILED = 2
EXIT_UNREACHABLE = 4
PLAYBOOKS = ("rollout.yml", "site.yml", "uninstall.yml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="install or upgrade the mesh on your hosts with Weft's Ansible playbooks",
        description="Run one of Weft's playbooks (rollout.yml: a rolling upgrade that drains each "
        "host through the registry; site.yml: install or converge; uninstall.yml) through "
        "ansible-runner, with a live line per host result and a summary table. Exits non-zero "
        "naming every host that failed and why. See docs/ansible.md.",
    )
    parser.add_argument("--inventory", "-i", required=True, type=Path, help="Ansible inventory")
    parser.add_argument(
        "--playbook",
        default="rollout.yml",
        help=f"one of {', '.join(PLAYBOOKS)} (in the playbook directory) or a path "
        "[default: rollout.yml]",
    )
    parser.add_argument("--limit", "-l", help="only these hosts (an Ansible host pattern)")
    parser.add_argument(
        "--check", action="store_true", help="dry run: report what would change, change nothing"
    )
    parser.add_argument("--diff", action="store_true", help="show file differences")
    parser.add_argument(
        "--extra-vars",
        "-e",
        action="append",
        default=[],
        metavar="VARS",
        help="KEY=VALUE, @FILE (YAML or JSON) or a JSON object; repeatable",
    )
    parser.add_argument(
        "--ansible-dir",
        type=Path,
        default=os.environ.get("WEFT_ANSIBLE_DIR") or None,
        help="Weft's ansible/ directory (env WEFT_ANSIBLE_DIR) [default: ./ansible, or the one "
        "beside this installation's source]",
    )
    parser.add_argument(
        "--artifacts-dir",
        type=Path,
        default=None,
        help="where runs keep their artifacts [default: ~/.cache/weft/rollout]",
    )
    parser.add_argument(
        "--summary-json", type=Path, metavar="FILE", help="also write the summary here as JSON"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show every result, not only changes"
    )
    parser.set_defaults(func=run)


# -- pure parts ---------------------------------------------------------------------------------


def parse_extra_vars(
    items: Iterable[str], read: Callable[[Path], str] = Path.read_text
) -> dict[str, Any]:
    """`-e` values → one dict, later wins: KEY=VALUE (string), @FILE (YAML/JSON), {JSON}."""
    out: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:])
            try:
                data = yaml.safe_load(read(path))
            except OSError as exc:
                raise CommandError(f"-e {item}: cannot read {path}: {exc.strerror}", 66) from None
            except yaml.YAMLError as exc:
                raise CommandError(f"-e {item}: {path} is not YAML or JSON: {exc}", 64) from None
            if data is None:
                continue
            if not isinstance(data, dict):
                raise CommandError(f"-e {item}: {path} must hold a mapping of variables", 64)
            out.update(data)
        elif item.lstrip().startswith("{"):
            try:
                data = json.loads(item)
            except ValueError as exc:
                raise CommandError(f"-e {item!r}: not a JSON object: {exc}", 64) from None
            if not isinstance(data, dict):
                raise CommandError(f"-e {item!r}: not a JSON object", 64)
            out.update(data)
        elif "=" in item and item.split("=", 1)[0].strip():
            key, value = item.split("=", 1)
            out[key.strip()] = value
        else:
            raise CommandError(f"-e {item!r}: expected KEY=VALUE, @FILE or a JSON object", 64)
    return out


def task_label(event_data: Mapping[str, Any]) -> str:
    task = str(event_data.get("task") or event_data.get("name") or "?")
    role = event_data.get("role")
    return f"{role} : {task}" if role and not task.startswith(f"{role} :") else task


def result_message(res: Mapping[str, Any]) -> str:
    """The most telling line of a failed result: its msg, else stderr, else stdout, else rc."""
    for key in ("msg", "stderr", "stdout", "reason"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    if isinstance(res.get("results"), list):
        for item in res["results"]:
            if isinstance(item, Mapping) and item.get("failed"):
                return result_message(item)
    if "rc" in res:
        return f"exit status {res['rc']}"
    return "failed"


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def line(self) -> str:
        what = "unreachable" if self.unreachable else "failed"
        return f"{self.host} {what} at {self.task!r}: {self.message}"


@dataclass
class HostTally:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class Report:
    """Runner events in, display lines and a summary out."""

    verbose: bool = False
    failures: list[Failure] = field(default_factory=list)
    tallies: dict[str, HostTally] = field(default_factory=dict)
    stats_seen: bool = False
    current: dict[str, tuple[str, float]] = field(default_factory=dict)  # host -> (task, since)
    plays: list[str] = field(default_factory=list)

    def event(self, event: Mapping[str, Any], now: float = 0.0) -> list[str]:
        """Take one runner event; return the lines to show for it (maybe none)."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = str(data.get("host") or data.get("remote_addr") or "")
        if kind == "playbook_on_play_start":
            name = str(data.get("name") or data.get("play") or "")
            self.plays.append(name)
            return [f"PLAY {name}"]
        if kind == "runner_on_start" and host:
            self.current[host] = (task_label(data), now)
            return []
        if kind == "playbook_on_stats":
            self._stats(data)
            return []
        if not host or not kind.startswith("runner_"):
            return []
        label = task_label(data)
        res = data.get("res") or {}
        self.tallies.setdefault(host, HostTally())
        if kind in (
            "runner_on_ok",
            "runner_on_failed",
            "runner_on_skipped",
            "runner_on_unreachable",
        ):
            self.current.pop(host, None)
        if kind == "runner_on_failed":
            if data.get("ignore_errors"):
                return [f"  {host:<16} ignored  {label}"] if self.verbose else []
            failure = Failure(host, label, result_message(res))
            self.failures.append(failure)
            return [f"  {host:<16} FAILED   {label}: {failure.message}"]
        if kind == "runner_on_unreachable":
            failure = Failure(host, label, result_message(res), unreachable=True)
            self.failures.append(failure)
            return [f"  {host:<16} UNREACHABLE {label}: {failure.message}"]
        if kind == "runner_retry":
            attempts, retries = res.get("attempts", "?"), res.get("retries", "?")
            return [f"  {host:<16} waiting  {label} (attempt {attempts} of {retries})"]
        if kind == "runner_on_ok":
            duration = data.get("duration")
            took = f"  {duration:.1f}s" if isinstance(duration, int | float) else ""
            if res.get("changed"):
                return [f"  {host:<16} changed  {label}{took}"]
            if self.verbose:
                return [f"  {host:<16} ok       {label}{took}"]
            return []
        return []

    def _stats(self, data: Mapping[str, Any]) -> None:
        self.stats_seen = True
        columns = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        for key, attr in columns.items():
            for host, count in (data.get(key) or {}).items():
                setattr(self.tallies.setdefault(host, HostTally()), attr, int(count))
        for host in data.get("processed") or {}:
            self.tallies.setdefault(host, HostTally())

    def rows(self, hosts: Iterable[str] = ()) -> list[tuple[Any, ...]]:
        names = list(dict.fromkeys([*hosts, *self.tallies]))
        first_failure: dict[str, Failure] = {}
        for failure in self.failures:
            first_failure.setdefault(failure.host, failure)
        out: list[tuple[Any, ...]] = []
        for host in names:
            tally = self.tallies.get(host)
            if tally is None:
                out.append((host, "-", "-", "-", "-", "-", "not reached"))
                continue
            if host in first_failure:
                f = first_failure[host]
                result = f"{'unreachable' if f.unreachable else 'failed'}: {f.task}"
            else:
                result = "ok"
            out.append(
                (host, tally.ok, tally.changed, tally.failed, tally.unreachable, tally.skipped,
                 result)
            )  # fmt: skip
        return out

    def exit_status(self, runner_rc: int) -> int:
        if any(f.unreachable for f in self.failures):
            return EXIT_UNREACHABLE
        if self.failures or any(t.failed for t in self.tallies.values()):
            return EXIT_FAILED
        return 0 if runner_rc == 0 else 1

    def summary(self, hosts: Iterable[str] = ()) -> dict[str, Any]:
        return {
            "hosts": {
                row[0]: dict(
                    zip(
                        ("ok", "changed", "failed", "unreachable", "skipped", "result"),
                        row[1:],
                        strict=True,
                    )
                )
                for row in self.rows(hosts)
            },
            "failures": [
                {"host": f.host, "task": f.task, "message": f.message, "unreachable": f.unreachable}
                for f in self.failures
            ],
        }


def table(rows: list[tuple[Any, ...]]) -> list[str]:
    headers = ("HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED", "RESULT")
    cells = [list(headers)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in cells]


# -- wiring -------------------------------------------------------------------------------------


def find_ansible_dir(given: Path | None) -> Path:
    candidates = [given] if given else [Path("ansible"), Path(__file__).parents[2] / "ansible"]
    for candidate in candidates:
        if candidate and (candidate / "rollout.yml").is_file():
            return candidate.resolve()
    if given:
        raise CommandError(f"{given} is not Weft's ansible/ directory (no rollout.yml in it)", 66)
    raise CommandError(
        "cannot find Weft's playbooks: run from Weft's source tree, or give --ansible-dir "
        "(or WEFT_ANSIBLE_DIR) pointing at its ansible/ directory",
        66,
    )


def find_playbook(ansible_dir: Path, name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path.resolve()
    if (ansible_dir / name).is_file():
        return ansible_dir / name
    raise CommandError(
        f"no playbook {name!r}: expected one of {', '.join(PLAYBOOKS)} or a path", 66
    )


def inventory_hosts(inventory: Path, limit: str | None) -> list[str]:
    """Hosts the run may touch, in inventory order (for 'not reached' rows); best effort."""
    try:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader

        manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
        if limit:
            manager.subset(limit)
        return [h.name for h in manager.get_hosts("all")]
    except Exception:
        return []


class Live:
    """Writes result lines as they come; on a terminal, also a status line of what each host
    is doing now (redrawn in place)."""

    def __init__(self, report: Report, out: TextIO) -> None:
        self.report = report
        self.out = out
        self.tty = out.isatty()
        self.status_shown = False

    def __call__(self, event: Mapping[str, Any]) -> bool:
        lines = self.report.event(event, time.monotonic())
        if self.status_shown:
            self.out.write("\r\033[K")
            self.status_shown = False
        for line in lines:
            self.out.write(line + "\n")
        if self.tty and self.report.current:
            now = time.monotonic()
            status = "; ".join(
                f"{host}: {task} ({now - since:.0f}s)"
                for host, (task, since) in sorted(self.report.current.items())
            )
            width = os.get_terminal_size(self.out.fileno()).columns
            self.out.write(status[: max(10, width - 1)])
            self.status_shown = True
        self.out.flush()
        return True


def run(args: argparse.Namespace) -> int:
    try:
        import ansible_runner
    except ImportError:
        raise CommandError(
            "weft rollout needs ansible-runner and ansible-core: pip install 'weft[rollout]'", 69
        ) from None
    if not args.inventory.exists():
        raise CommandError(f"inventory {args.inventory} does not exist", 66)
    ansible_dir = find_ansible_dir(args.ansible_dir)
    playbook = find_playbook(ansible_dir, args.playbook)
    extravars = parse_extra_vars(args.extra_vars)
    root = args.artifacts_dir or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "weft", "rollout"
    )
    root.mkdir(parents=True, exist_ok=True)
    ident = f"{time.strftime('%Y%m%d-%H%M%S')}-{playbook.stem}-{uuid.uuid4().hex[:6]}"
    artifacts = root.resolve() / ident
    # ansible-playbook from this installation first (a venv's weft run without activating it).
    bin_dir = Path(sys.executable).parent
    envvars = {
        "ANSIBLE_CONFIG": str(ansible_dir / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmdline = " ".join(flag for flag, on in (("--check", args.check), ("--diff", args.diff)) if on)
    report = Report(verbose=args.verbose)
    out = sys.stdout
    what = f"{playbook.name}{' (check mode)' if args.check else ''}"
    print(f"weft rollout: {what} on {args.inventory}; artifacts in {artifacts}", flush=True)
    with tempfile.TemporaryDirectory(prefix="weft-rollout-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            artifact_dir=str(root.resolve()),
            ident=ident,
            project_dir=str(ansible_dir),
            playbook=str(playbook),
            inventory=str(args.inventory.resolve()),
            limit=args.limit,
            extravars=extravars,
            cmdline=cmdline or None,
            envvars=envvars,
            event_handler=Live(report, out),
            quiet=True,
            suppress_env_files=True,
        )
    hosts = inventory_hosts(args.inventory, args.limit)
    status = report.exit_status(runner.rc)
    print()
    for line in table(report.rows(hosts)):
        print(line)
    print(f"\nartifacts: {artifacts} (job_events/, stdout)")
    if args.summary_json:
        summary = {
            "playbook": str(playbook),
            "check": args.check,
            "status": runner.status,
            "rc": runner.rc,
            "exit_status": status,
            "artifacts": str(artifacts),
            **report.summary(hosts),
        }
        args.summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if status:
        for failure in report.failures:
            print(f"weft rollout: {failure.line()}", file=sys.stderr)
        if not report.failures:
            print(
                f"weft rollout: ansible-playbook ended {runner.status} (rc {runner.rc}); "
                f"see {artifacts}/stdout",
                file=sys.stderr,
            )
    return status
