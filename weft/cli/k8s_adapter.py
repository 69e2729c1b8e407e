"""`weft k8s-adapter`: sync a Kubernetes cluster with the registry (in or outside the cluster)."""

from __future__ import annotations

import argparse
import sys

from weft._logging import setup_logging
from weft._settings import EX_USAGE, SettingsError, add_arguments, load_settings

from ._output import CommandError

ENV_PREFIX = "WEFT_K8S_"


def register(subparsers: argparse._SubParsersAction) -> None:
    from k8s_adapter import AdapterSettings

    parser = subparsers.add_parser(
        "k8s-adapter",
        help="sync a Kubernetes cluster's Services and Pods with the registry",
        description="Keep the registry's entries of source k8s/<cluster> equal to the cluster's "
        "Services, EndpointSlices and Pods (and, with --to-k8s, publish registry services as "
        "Services in the cluster). Istio VirtualServices and DestinationRules, Linkerd "
        "ServiceProfiles, Gateway API HTTPRoutes and SMI TrafficSplits in the cluster, where "
        "their CRDs are installed, become Weft traffic resources of that source (an "
        "operator's resource of the same name wins). Uses the in-cluster service account, or "
        "a kubeconfig when run outside. Settings come from --config FILE (TOML), then "
        "WEFT_K8S_* environment variables, then flags.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--purge",
        action="store_true",
        help="remove every registry entry of this cluster (source k8s/<cluster>), and the "
        "traffic resources its CRD objects made, and exit; "
        "stop the cluster's adapter first, or it writes them again",
    )
    add_arguments(parser, AdapterSettings, ENV_PREFIX)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k8s_adapter import AdapterSettings, ConfigError

    try:
        settings = load_settings(
            AdapterSettings, env_prefix=ENV_PREFIX, file=args.config, flags=vars(args)
        )
    except SettingsError as exc:
        print(f"weft k8s-adapter: invalid configuration: {exc}", file=sys.stderr)
        return EX_USAGE
    setup_logging(settings.log_format, settings.log_level)
    try:
        if args.purge:
            return _purge(settings)
        from k8s_adapter import run as run_adapter

        return run_adapter(settings)
    except ConfigError as exc:
        print(f"weft k8s-adapter: invalid configuration: {exc}", file=sys.stderr)
        return EX_USAGE


def _purge(settings: object) -> int:
    from k8s_adapter import purge_cluster

    from registry.client import APIError, ServerUnreachable

    try:
        removed = purge_cluster(settings)
    except (APIError, ServerUnreachable) as exc:
        raise CommandError(str(exc)) from exc
    source = getattr(settings, "source", "")
    instances, resources = removed
    print(f"removed {instances} instances of source {source}")
    if resources:
        print(f"removed {resources} traffic resources of source {source}")
    return 0
