"""`weft agent run|status`: the host daemon, and what it is doing."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from weft._logging import setup_logging
from weft._settings import EX_USAGE, SettingsError, add_arguments, load_settings

from ._output import CommandError, add_output_flag, print_json, print_table

ENV_PREFIX = "WEFT_AGENT_"
DEFAULT_CONFIG = "/etc/weft/agent.toml"


def register(subparsers: argparse._SubParsersAction) -> None:
    from agent import AgentConfig

    parser = subparsers.add_parser(
        "agent",
        help="run the host agent, or ask it how it is",
        description="The host agent: registers this host's "
        "services, runs their checks and sidecar proxies.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser(
        "run",
        help="run the agent (what weft-agent.service starts)",
        description="Settings come from --config (TOML; default /etc/weft/agent.toml if it "
        "exists), then WEFT_AGENT_* environment variables, then flags. Service definitions "
        "are read from services_dir. Exits 64 on bad configuration.",
    )
    run.add_argument("-c", "--config", metavar="FILE", help=f"[default: {DEFAULT_CONFIG}]")
    add_arguments(run, AgentConfig, ENV_PREFIX)
    run.set_defaults(func=run_agent)

    check = sub.add_parser(
        "check",
        help="validate agent.toml and service definitions without starting",
        description="With FILEs: check those service definitions, alone and as a set. Without: "
        "check the configuration (--config, as `run` reads it) and every definition in its "
        "services_dir. Exits 64 naming the file, the field and the rule on the first problem; "
        "ports in use are not checked (the running agent holds its own).",
    )
    check.add_argument("files", nargs="*", metavar="FILE", help="service definitions (*.toml)")
    check.add_argument("-c", "--config", metavar="FILE", help=f"[default: {DEFAULT_CONFIG}]")
    check.set_defaults(func=run_check)

    status = sub.add_parser("status", help="services, checks, proxies and snapshot versions")
    status.add_argument(
        "--agent",
        default=os.environ.get("WEFT_AGENT_ADDR", "127.0.0.1:8501"),
        help="the agent's local API (env WEFT_AGENT_ADDR) [default: 127.0.0.1:8501]",
    )
    add_output_flag(status)
    status.set_defaults(func=run_status)


def run_agent(args: argparse.Namespace) -> int:
    import trio

    from agent import Agent, AgentConfig, ConfigError, DefinitionError, load_directory, read_token

    config_file = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None)
    try:
        config = load_settings(
            AgentConfig, env_prefix=ENV_PREFIX, file=config_file, flags=vars(args)
        )
        token = read_token(config)
        defs = load_directory(config.services_dir)
    except (SettingsError, ConfigError) as exc:
        print(f"weft agent: invalid configuration: {exc}", file=sys.stderr)
        return EX_USAGE
    except DefinitionError as exc:
        print(f"weft agent: invalid service definition: {exc}", file=sys.stderr)
        return EX_USAGE
    from agent._definitions import port_is_free, ports_in_use
    from agent._supervisor import reap_leftovers

    # Proxies a killed agent left behind still hold their ports: stop them first.
    reap_leftovers(Path(config.data_dir) / "proxies", config.grace)
    try:
        ports_in_use(defs, port_is_free, set())
    except DefinitionError as exc:
        print(f"weft agent: invalid service definition: {exc}", file=sys.stderr)
        return EX_USAGE
    setup_logging(config.log_format, config.log_level)
    try:
        trio.run(Agent(config, defs, token).run)
    except ConfigError as exc:
        print(f"weft agent: {exc}", file=sys.stderr)
        return EX_USAGE
    return 0


def run_check(args: argparse.Namespace) -> int:
    from agent import AgentConfig, DefinitionError, load_directory
    from agent._definitions import check_set, parse

    try:
        if args.files:
            defs = []
            for name in args.files:
                try:
                    text = Path(name).read_text()
                except OSError as exc:
                    raise DefinitionError(name, "", f"cannot be read: {exc.strerror}") from None
                defs.append(parse(name, text))
            check_set(defs)
        else:
            config_file = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None)
            config = load_settings(AgentConfig, env_prefix=ENV_PREFIX, file=config_file)
            defs = load_directory(config.services_dir)
    except SettingsError as exc:
        print(f"weft agent: invalid configuration: {exc}", file=sys.stderr)
        return EX_USAGE
    except DefinitionError as exc:
        print(f"weft agent: invalid service definition: {exc}", file=sys.stderr)
        return EX_USAGE
    print(f"ok: {len(defs)} service definition{'s' if len(defs) != 1 else ''}")
    return 0


def fetch_status(address: str) -> dict:
    url = address if "://" in address else f"http://{address}"
    try:
        with urllib.request.urlopen(url + "/v1/agent/status", timeout=5) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(
            f"cannot reach the agent at {address}: {exc}; is weft-agent running?"
        ) from None


def run_status(args: argparse.Namespace) -> int:
    status = fetch_status(args.agent)
    if args.output == "json":
        print_json(status)
        return 0
    print(
        f"node {status['node']} ({status['node_address']}), "
        f"{'connected to' if status['connected'] else 'cannot reach'} "
        f"{', '.join(status['servers'])}; {'ready' if status['ready'] else 'starting'}"
    )
    rows = []
    for svc in status["services"]:
        checks = ", ".join(f"{cid}={c.get('status', '?')}" for cid, c in svc["checks"].items())
        sidecar = svc.get("sidecar")
        if sidecar:
            applied = sidecar["applied_version"]
            applied_text = f"v{applied}" if applied else "none"
            snap = f"v{sidecar['snapshot_version']} (applied {applied_text})"
            cert = sidecar["certificate_not_after"] or "none"
        else:
            snap, cert = "-", "-"
        rows.append((svc["id"], svc["port"], checks or "-", snap, cert))
    print_table(("SERVICE", "PORT", "CHECKS", "SNAPSHOT", "CERT EXPIRES"), rows)
    return 0
