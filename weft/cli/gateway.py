"""`weft gateway`: the ingress gateway, an edge proxy in front of the mesh (docs/gateway.md)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from weft._settings import EX_USAGE, SettingsError, add_arguments, load_settings, setting

from ._output import CommandError
from .proxy import ProxySettings

ENV_PREFIX = "WEFT_GATEWAY_"


@dataclass(frozen=True)
class GatewaySettings(ProxySettings):
    """The proxy's settings (limits, timeouts, admin, snapshot source) and the edge's own."""

    admin: str = setting(
        "127.0.0.1:15100", help="admin listener host:port (/ready /live /metrics /config /tap)"
    )
    listen: str = setting(
        "0.0.0.0:8443", help="the public TLS listener host:port (':0' for any free port)"
    )
    certificates: tuple[str, ...] = setting(
        (),
        help="operator certificate pairs CERT:KEY (PEM), comma-separated; each serves the "
        "DNS names of its certificate, chosen by SNI; reloaded on SIGHUP and on change",
    )
    default_certificate: str = setting(
        "", help="the CERT of the pair served to clients without a known SNI [default: the first]"
    )
    max_connections: int = setting(10000, help="open public connections at most (then closed)")
    max_connections_per_client: int = setting(
        256, help="open public connections from one client address at most"
    )

    def validate(self) -> None:
        super().validate()
        from proxy._gateway_runtime import parse_pair
        from proxy._options import parse_address

        if self.workers != 1:
            raise SettingsError("workers", "the gateway runs one process (workers = 1)")
        try:
            parse_address(self.listen)
        except ValueError as exc:
            raise SettingsError("listen", str(exc)) from None
        if not self.certificates:
            raise SettingsError(
                "certificates", "is required: at least one CERT:KEY pair to serve the public TLS"
            )
        for text in self.certificates:
            try:
                pair = parse_pair(text)
            except ValueError as exc:
                raise SettingsError("certificates", str(exc)) from None
            for path in (pair.cert, pair.key):
                if not Path(path).is_file():
                    raise SettingsError("certificates", f"{path} is not a readable file")
        if self.default_certificate and self.default_certificate not in {
            parse_pair(t).cert for t in self.certificates
        }:
            raise SettingsError(
                "default_certificate",
                f"{self.default_certificate} is not the CERT of any pair in certificates",
            )
        if not 1 <= self.max_connections <= 1_000_000:
            raise SettingsError("max_connections", "must be between 1 and 1000000")
        if not 1 <= self.max_connections_per_client <= self.max_connections:
            raise SettingsError(
                "max_connections_per_client", "must be between 1 and max_connections"
            )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="run the ingress gateway: public TLS by SNI, routing by host and path into the mesh",
        description=(
            "Run Weft's ingress gateway. It terminates public TLS with the operator's "
            "certificates (chosen by SNI, reloaded on SIGHUP and when the files change), routes "
            "requests by Host and path with the mesh's Gateway and Route resources, and calls "
            "mesh services over mTLS as its own service identity (a service of kind "
            "ingress-gateway on this host's agent, whose snapshot it streams with "
            "--snapshot-url). SIGTERM drains. See docs/gateway.md."
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (a [gateway] section)")
    add_arguments(parser, GatewaySettings, ENV_PREFIX)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from weft._logging import setup_logging

    try:
        settings = load_settings(
            GatewaySettings,
            env_prefix=ENV_PREFIX,
            file=args.config,
            flags=vars(args),
            file_section="gateway",
        )
    except SettingsError as exc:
        raise CommandError(str(exc), status=EX_USAGE) from None
    setup_logging(settings.log_format, settings.log_level)
    import trio

    from proxy import StartupError
    from proxy._gateway_runtime import main

    try:
        trio.run(main, settings)
    except StartupError as exc:
        raise CommandError(str(exc), status=exc.status) from None
    return 0
