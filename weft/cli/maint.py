"""`weft maint on|off|list`: a node's maintenance mode, set through the registry.

A node in maintenance keeps its instances registered, but every one of them reports Consul's
`_node_maintenance` critical check: they leave `?passing` views, so peers' proxies drop them
from their endpoints while the host drains, restarts or is repaired.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

from ._client import add_client_flags, call
from ._output import CommandError, add_output_flag, print_json, print_table

AGENT_CONFIG = "/etc/weft/agent.toml"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "maint",
        help="put a node in maintenance or take it out",
        description="Maintenance takes every instance on a node out of ?passing (and so out of "
        "the proxies' endpoints) without deregistering them. With an agent token the node is "
        "the token's; an operator token needs --node. On a host with "
        f"{AGENT_CONFIG} and no server flags, the agent's servers, node and token are used.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("on", "enable maintenance"), ("off", "disable maintenance")):
        cmd = sub.add_parser(action, help=f"{text} on a node")
        cmd.add_argument("--node", help="the node [default: the agent token's node]")
        if action == "on":
            cmd.add_argument(
                "--reason", default="", help="why (shown as the maintenance check's notes)"
            )
        cmd.add_argument(
            "--agent-config",
            default=AGENT_CONFIG,
            metavar="FILE",
            help=f"agent.toml to take defaults from [default: {AGENT_CONFIG} if it exists]",
        )
        add_client_flags(cmd)
        cmd.set_defaults(func=run_set, enable=action == "on")
    listing = sub.add_parser("list", help="nodes in maintenance, with their reasons")
    listing.add_argument("--agent-config", default=AGENT_CONFIG, help=argparse.SUPPRESS)
    add_output_flag(listing)
    add_client_flags(listing)
    listing.set_defaults(func=run_list)


def agent_defaults(path: str) -> dict[str, Any]:
    """Servers, node, token file and CA file from an agent.toml, if one is there to read."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", 66) from None
    servers = data.get("servers") or []
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    return {
        "address": ",".join(servers),
        "node": data.get("node_name") or "",
        "token_file": data.get("token_file") or "/etc/weft/agent.token",
        # An agent that joined by fingerprint keeps the bundle it pinned in its data dir; that
        # is what verifies the servers' HTTPS for it, so it does for this command too.
        "ca_file": data.get("ca_file")
        or (
            str(Path(data.get("data_dir") or "/var/lib/weft") / "ca.pem")
            if data.get("ca_fingerprint")
            else ""
        ),
    }


def _with_agent_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Fill server flags from agent.toml when neither flags nor environment give them."""
    if args.address or os.environ.get("WEFT_ADDR"):
        return {}
    found = agent_defaults(args.agent_config)
    if not found:
        return {}
    if found["address"]:
        args.address = found["address"]
    given = args.token or args.token_file
    if not (given or os.environ.get("WEFT_TOKEN") or os.environ.get("WEFT_TOKEN_FILE")):
        args.token_file = found["token_file"]
    if not args.ca_file and not os.environ.get("WEFT_CA_FILE") and found["ca_file"]:
        args.ca_file = found["ca_file"]
    return found


def run_set(args: argparse.Namespace) -> int:
    found = _with_agent_defaults(args)
    reason = getattr(args, "reason", "")

    async def work(client: Any) -> str:
        node = args.node
        if not node:
            me = await client.token_self()
            node = me.get("node") or found.get("node")
            if not node:
                raise CommandError(f"a {me['role']} token is not bound to a node: give --node", 64)
        await client.maintenance(node, args.enable, reason)
        return str(node)

    node = call(args, work)
    if args.enable:
        print(f"{node}: maintenance on" + (f" ({reason})" if reason else ""))
    else:
        print(f"{node}: maintenance off")
    return 0


def run_list(args: argparse.Namespace) -> int:
    _with_agent_defaults(args)
    nodes = call(args, lambda c: _maintenance(c))
    if args.output == "json":
        print_json(nodes)
        return 0
    print_table(
        ("NODE", "REASON", "SINCE"),
        [(n, r.get("reason", ""), _since(r.get("since"))) for n, r in sorted(nodes.items())],
    )
    return 0


async def _maintenance(client: Any) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = (await client.get_json("/v1/registry/maintenance"))[0]
    return nodes


def _since(value: Any) -> str:
    import datetime

    if not isinstance(value, int | float):
        return ""
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
