"""`weft agent` configuration: `/etc/weft/agent.toml`, then `WEFT_AGENT_*`, then flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from registry.validation import parse_duration
from registry.web import connection_settings_problem
from weft._settings import MAX_WORKERS, parse_workers

from ._errors import ConfigError

_FINGERPRINT = re.compile(r"(sha256:)?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}")


def opt(default: Any, help: str, **extra: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def normalise_fingerprint(value: str) -> str:
    """'sha256:ab:cd...' or 'ABCD...' → 'AB:CD:...' (how `weft ca status` prints it)."""
    hexdigits = value.lower().removeprefix("sha256:").replace(":", "")
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2)).upper()


@dataclass(frozen=True)
class AgentConfig:
    servers: tuple[str, ...] = opt(
        ("http://127.0.0.1:8500",), "weft server addresses, comma-separated"
    )
    node_name: str = opt("", "this host's node name [default: the host name]")
    node_address: str = opt(
        "",
        "address other hosts reach this one at "
        "[default: the address used to reach the first server]",
    )
    token_file: str = opt("/etc/weft/agent.token", "file holding this node's agent token")
    token: str = opt("", "the agent token itself (prefer token_file)", secret=True)
    data_dir: str = opt("/var/lib/weft", "keys, certificates, snapshots and state")
    services_dir: str = opt("/etc/weft/services.d", "service definitions (*.toml)")
    ca_file: str = opt("", "trust bundle (PEM) to verify the servers' TLS and the mesh")
    ca_fingerprint: str = opt(
        "",
        "join by fingerprint instead of ca_file: the SHA-256 of the "
        "root the servers' CA must have (see `weft ca status`)",
    )
    api_listen: str = opt("127.0.0.1:8501", "the agent's local API (proxies, `weft check`)")
    api_max_connections: int = opt(
        1024, "local API connections held at once; more get 503 (fits under LimitNOFILE)"
    )
    api_max_connections_per_ip: int = opt(
        0, "local API connections from one address (0: no cap; every client is loopback)"
    )
    api_head_timeout: float = opt(
        10.0, "time to receive a whole request head, from its first byte", parse=parse_duration
    )
    api_body_timeout: float = opt(
        30.0, "time to receive a whole request body, from the end of its head", parse=parse_duration
    )
    api_idle_timeout: float = opt(
        75.0, "how long a keep-alive connection may sit with no request", parse=parse_duration
    )
    api_send_timeout: float = opt(
        30.0, "how long a client may take to read a response", parse=parse_duration
    )
    api_read_ahead_bytes: int = opt(
        64 * 1024, "bytes read ahead from a client while its last request is answered"
    )
    dns_listen: str = opt(
        "",
        "serve DNS for the host here (UDP and TCP, e.g. 127.0.0.1:8600), relayed to the "
        "servers' DNS interface [default: off]",
    )
    dns_servers: tuple[str, ...] = opt(
        (),
        "the servers' DNS interfaces (host:port), comma-separated [default: each server's "
        "host, port 8600]",
    )
    lease_ttl: float = opt(
        15.0, "how long this node's instances outlive a dead agent", parse=parse_duration
    )
    sync_interval: float = opt(60.0, "full anti-entropy re-sync period", parse=parse_duration)
    report_interval: float = opt(
        10.0,
        "how often this host reports its clock, proxies and certificates to the servers "
        "(what `weft check` judges)",
        parse=parse_duration,
    )
    cert_lifetime: float = opt(
        0.0, "lifetime to ask for mesh certificates [default: the server's]", parse=parse_duration
    )
    cert_renew_fraction: float = opt(
        0.0,
        "renew certificates at this fraction of their life "
        "(0.6-0.9); 0: a random point in that range, so a fleet "
        "does not come back to the CA together",
    )
    metrics_interval: float = opt(
        10.0,
        "how often the proxies' counters are read and pushed to the servers (0: never); "
        "the servers refuse pushes closer than their metrics_min_interval",
        parse=parse_duration,
    )
    trust_domain: str = opt("", "expected trust domain [default: whatever the CA says]")
    proxy_command: tuple[str, ...] = opt((), "how to start a proxy [default: this weft]")
    proxy_workers: int = opt(
        1,
        "processes per proxy sharing its listeners (SO_REUSEPORT): a number, or auto for one "
        "per core",
        parse=parse_workers,
    )
    proxy_admin_host: str = opt(
        "127.0.0.1",
        "address the sidecars' admin listeners (/metrics, /tap, /config) bind; 0.0.0.0 lets "
        "a Prometheus on another host scrape them (no authentication there: firewall it)",
    )
    watchdog: bool = opt(True, "send WATCHDOG=1 when systemd asks for it")
    ready_file: str = opt("", "write {address, pid} as JSON here once ready")
    grace: float = opt(10.0, "seconds proxies get to drain on stop", parse=parse_duration)
    log_format: str = opt("text", "log line format: text or json")
    log_level: str = opt("info", "debug, info, warning or error")

    def dns_upstreams(self) -> list[tuple[str, int]]:
        """Where the DNS relay asks: `dns_servers`, else every server's host on port 8600."""
        from urllib.parse import urlsplit

        if self.dns_servers:
            return [_host_port(value, "dns_servers") for value in self.dns_servers]
        hosts = [urlsplit(server).hostname or "127.0.0.1" for server in self.servers]
        return [(host, 8600) for host in dict.fromkeys(hosts)]

    @property
    def node(self) -> str:
        return self.node_name or socket.gethostname().split(".")[0]

    def validate(self) -> None:
        if not self.servers:
            raise ConfigError("servers", "at least one server address is required")
        for server in self.servers:
            if not server.startswith(("http://", "https://")):
                raise ConfigError("servers", f"{server!r} is not an http(s):// URL")
        if self.ca_file and self.ca_fingerprint:
            raise ConfigError("ca_fingerprint", "give ca_file or ca_fingerprint, not both")
        if self.ca_fingerprint and not _FINGERPRINT.fullmatch(self.ca_fingerprint):
            raise ConfigError(
                "ca_fingerprint",
                "expected a SHA-256 fingerprint: 32 hex bytes, "
                "e.g. sha256:AB:CD:... as `weft ca status` prints it",
            )
        _, sep, port = self.api_listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError("api_listen", f"{self.api_listen!r} is not host:port")
        if self.dns_listen:
            _host_port(self.dns_listen, "dns_listen")
            self.dns_upstreams()
        problem = connection_settings_problem(self, "api_")
        if problem:
            raise ConfigError(*problem)
        if not 5 <= self.lease_ttl <= 3600:
            raise ConfigError("lease_ttl", "must be 5s-1h")
        if self.sync_interval < 1:
            raise ConfigError("sync_interval", "must be at least 1s")
        if not 0.5 <= self.report_interval <= 600:
            raise ConfigError("report_interval", "must be 500ms-10m")
        if self.cert_renew_fraction and not 0.6 <= self.cert_renew_fraction <= 0.9:
            raise ConfigError("cert_renew_fraction", "must be 0 (random) or 0.6-0.9")
        if self.metrics_interval and not 0.5 <= self.metrics_interval <= 300:
            raise ConfigError("metrics_interval", "must be 0 (off) or 0.5s-5m")
        try:
            ipaddress.ip_address(self.proxy_admin_host)
        except ValueError:
            raise ConfigError(
                "proxy_admin_host", f"{self.proxy_admin_host!r} is not an IP address"
            ) from None
        if not 1 <= self.proxy_workers <= MAX_WORKERS:
            raise ConfigError(
                "proxy_workers", f"{self.proxy_workers} is not between 1 and {MAX_WORKERS}"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format", "must be text or json")
        if self.node_name:
            from registry.validation import InvalidInput, node_name

            try:
                node_name(self.node_name, "node_name")
            except InvalidInput as exc:
                raise ConfigError("node_name", exc.message.split(": ", 1)[1]) from None


def _host_port(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ConfigError(field, f"{value!r} is not host:port (e.g. 127.0.0.1:8600)")
    return host.strip("[]"), int(port)
