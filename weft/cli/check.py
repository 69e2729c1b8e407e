"""`weft check pass|warn|fail CHECK-ID`: update a TTL check through the local agent."""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ._output import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="pass, warn or fail a TTL check",
        description="Report a TTL check's state to this host's "
        "agent (which resets the check's TTL).",
    )
    parser.add_argument("state", choices=("pass", "warn", "fail"))
    parser.add_argument("check_id")
    parser.add_argument("--note", default="", help="becomes the check's output")
    parser.add_argument(
        "--agent",
        default=os.environ.get("WEFT_AGENT_ADDR", "127.0.0.1:8501"),
        help="the agent's local API (env WEFT_AGENT_ADDR)",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("WEFT_TOKEN_FILE", "/etc/weft/agent.token"),
        help="the node's agent token (env WEFT_TOKEN or WEFT_TOKEN_FILE)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("WEFT_TOKEN")
    if not token:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the agent token {args.token_file}: {exc.strerror}", 64
            ) from None
    base = args.agent if "://" in args.agent else f"http://{args.agent}"
    query = urllib.parse.urlencode({"note": args.note}) if args.note else ""
    url = f"{base}/v1/agent/check/{args.state}/{urllib.parse.quote(args.check_id)}"
    request = urllib.request.Request(
        url + (f"?{query}" if query else ""), method="PUT", headers={"X-Consul-Token": token}
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
