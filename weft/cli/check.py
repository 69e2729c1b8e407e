"""`weft check`: is the mesh healthy? One line per check, each passing or saying what to do.

    weft check                       the mesh, through the servers' HTTP APIs
    weft check --pre                 this host, before installing Weft on it
    weft check pass|warn|fail ID     update a TTL check through this host's agent

Exit status: 0 when every check passed, 1 when any failed (or, with --strict, warned).
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ._client import DEFAULT_ADDRESS, add_client_flags, token_from
from ._output import CommandError, add_output_flag, print_json

DEFAULT_AGENT_TOKEN = "/etc/weft/agent.token"


def _duration(text: str) -> float:
    from registry.validation import InvalidInput, parse_duration

    if text.endswith("d") and text[:-1].isdigit():  # days: CA lifetimes are counted in them
        return int(text[:-1]) * 86400.0
    try:
        return float(parse_duration(text, "duration"))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check the mesh (--pre: this host before install); or pass/warn/fail a TTL check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n", 1)[1] if __doc__ else None,
        epilog="Every check, and what to do when it fails: docs/operations.md (`weft check`).",
    )
    parser.add_argument(
        "state", nargs="?", choices=("pass", "warn", "fail"), help="TTL check mode: the state"
    )
    parser.add_argument("check_id", nargs="?", help="TTL check mode: the check's ID")
    parser.add_argument("--note", default="", help="TTL check mode: becomes the check's output")
    parser.add_argument(
        "--agent",
        default=os.environ.get("WEFT_AGENT_ADDR", "127.0.0.1:8501"),
        help="TTL check mode: the agent's local API (env WEFT_AGENT_ADDR); the token is the "
        f"node's agent token (--token, WEFT_TOKEN, --token-file [default: {DEFAULT_AGENT_TOKEN}])",
    )
    parser.add_argument("--pre", action="store_true", help="check this host before installing")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit status 1)")
    mesh = parser.add_argument_group("mesh checks")
    mesh.add_argument(
        "--max-skew",
        type=_duration,
        default=2.0,
        metavar="DURATION",
        help="a host's clock may differ from the servers' by this much [default: 2s]",
    )
    mesh.add_argument(
        "--ca-expiry",
        type=_duration,
        default=30 * 86400.0,
        metavar="DURATION",
        help="a CA root or intermediate ending sooner than this fails [default: 30d]",
    )
    mesh.add_argument(
        "--snapshot-lag",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="a proxy may take this long to apply its latest snapshot [default: 10s]",
    )
    pre = parser.add_argument_group("--pre checks")
    pre.add_argument(
        "--port",
        type=int,
        action="append",
        default=[],
        help="a port that must be free (repeatable) [default: 8500 and 8501]",
    )
    pre.add_argument(
        "--etcd-binary", default=None, help="the etcd to check [default: etcd on PATH]"
    )
    add_output_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.state is not None:
        if args.check_id is None:
            raise CommandError("give the TTL check's ID: weft check pass|warn|fail CHECK-ID", 64)
        return _ttl(args)
    if args.check_id is not None:
        raise CommandError(f"unknown mode {args.check_id!r}: use pass, warn or fail", 64)
    from ._check_lines import as_json, exit_status, print_lines

    if args.pre:
        from ._check_pre import DEFAULT_PORTS, pre_lines

        lines = pre_lines(args.port or DEFAULT_PORTS, args.etcd_binary)
    else:
        lines = _mesh(args)
    if args.output == "json":
        print_json(as_json(lines, strict=args.strict))
    else:
        print_lines(lines)
    return exit_status(lines, strict=args.strict)


def _mesh(args: argparse.Namespace) -> list:
    import trio

    from ._check_judge import Limits, judge
    from ._check_mesh import gather

    address = args.address or os.environ.get("WEFT_ADDR") or DEFAULT_ADDRESS
    ca_file = args.ca_file or os.environ.get("WEFT_CA_FILE")
    addresses = [a.strip() for a in address.split(",") if a.strip()]
    facts = trio.run(lambda: gather(addresses, token=token_from(args), ca_file=ca_file))
    limits = Limits(
        max_skew=args.max_skew, ca_expiry=args.ca_expiry, snapshot_lag=args.snapshot_lag
    )
    return judge(facts, limits)


def _ttl(args: argparse.Namespace) -> int:
    if (
        not args.token
        and not os.environ.get("WEFT_TOKEN")
        and not (args.token_file or os.environ.get("WEFT_TOKEN_FILE"))
    ):
        try:
            token: str | None = Path(DEFAULT_AGENT_TOKEN).read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the agent token {DEFAULT_AGENT_TOKEN}: {exc.strerror}", 64
            ) from None
    else:
        token = token_from(args)
    base = args.agent if "://" in args.agent else f"http://{args.agent}"
    query = urllib.parse.urlencode({"note": args.note}) if args.note else ""
    url = f"{base}/v1/agent/check/{args.state}/{urllib.parse.quote(args.check_id)}"
    request = urllib.request.Request(
        url + (f"?{query}" if query else ""),
        method="PUT",
        headers={"X-Consul-Token": token or ""},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        raise CommandError(f"the agent refused: {exc.read().decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"cannot reach the agent at {args.agent}: {exc}") from None
    print(f"{args.check_id}: {args.state}")
    return 0
