"""`weft server` configuration (a typed dataclass the CLI fills from file, env and flags)."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any

from ._numbers import parse_duration
from .web import connection_settings_problem


class ConfigError(ValueError):
    """A setting is invalid; `field` names it (the CLI exits 64 with this message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def opt(default: Any, help: str, **extra: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def split_host_port(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(field, f"{value!r} is not host:port (e.g. 127.0.0.1:8500)")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class ServerConfig:
    listen: str = opt("127.0.0.1:8500", "address to serve the HTTP API on (port 0: any free)")
    advertise: str = opt("", "address other hosts reach this server at (default: listen)")
    etcd_endpoints: tuple[str, ...] = opt(
        ("http://127.0.0.1:2379",), "etcd client URLs, comma-separated"
    )
    etcd_prefix: str = opt("/weft/", "etcd key prefix holding all of Weft's data")
    etcd_ca_file: str = opt("", "CA bundle to verify etcd's TLS certificate")
    etcd_cert_file: str = opt("", "client certificate for etcd")
    etcd_key_file: str = opt("", "client key for etcd")
    etcd_username: str = opt("", "etcd user (etcd auth)")
    etcd_password: str = opt("", "etcd password (prefer the environment variable)", secret=True)
    datacenter: str = opt("dc1", "datacenter name reported to Consul clients")
    node_name: str = opt("weft", "node for services registered without an agent token")
    anonymous_reads: bool = opt(False, "allow catalog, health and KV reads without a token")
    require_agent_services: bool = opt(
        False,
        "refuse agent tokens without a service set (turn on once `weft token update "
        "--services` has scoped every host's token)",
    )
    check_allow_networks: tuple[str, ...] = opt(
        (),
        "networks (CIDR, comma-separated) server-run HTTP/TCP checks may reach besides each "
        "instance's own address; loopback and link-local (cloud metadata) only if listed",
    )
    tls_cert_file: str = opt("", "serve HTTPS with this certificate chain")
    tls_key_file: str = opt("", "private key for --tls-cert-file")
    max_body_bytes: int = opt(1 << 20, "largest request body accepted")
    max_connections: int = opt(
        8192, "client connections held at once; more get 503 (fits under LimitNOFILE=65536)"
    )
    max_connections_per_ip: int = opt(
        2048, "connections held at once from one address (0: no cap, behind a load balancer)"
    )
    head_timeout: float = opt(
        10.0, "time to receive a whole request head, from its first byte", parse=parse_duration
    )
    body_timeout: float = opt(
        30.0, "time to receive a whole request body, from the end of its head", parse=parse_duration
    )
    idle_timeout: float = opt(
        75.0, "how long a keep-alive connection may sit with no request", parse=parse_duration
    )
    send_timeout: float = opt(
        30.0, "how long a client may take to read a response", parse=parse_duration
    )
    read_ahead_bytes: int = opt(
        64 * 1024, "bytes read ahead from a client while its last request is answered"
    )
    view_cache_bytes: int = opt(
        64 << 20, "memory for rendered catalog views shared by blocking queries"
    )
    min_check_interval: float = opt(
        1.0, "shortest HTTP/TCP check interval (seconds)", parse=parse_duration
    )
    min_deregister_critical_after: float = opt(
        60.0, "shortest DeregisterCriticalServiceAfter honoured (seconds)", parse=parse_duration
    )
    reap_interval: float = opt(
        1.0, "how often TTLs and critical services are checked", parse=parse_duration
    )
    staleness_bound: float = opt(
        5.0,
        "longest this server may be cut off from etcd (or its watch behind) before it reports "
        "unhealthy (503), no known leader, and checks tokens of writes against etcd itself",
        parse=parse_duration,
    )
    compaction_retention: float = opt(
        600.0,
        "etcd history kept when the leader compacts (0: never compact); watches broken for "
        "less than this resume without a full re-read",
        parse=parse_duration,
    )
    compaction_interval: float = opt(60.0, "how often the leader compacts", parse=parse_duration)
    etcd_quota_bytes: int = opt(
        2 * 1024**3, "etcd's --quota-backend-bytes; health warns at 70 percent of it"
    )
    etcd_status_interval: float = opt(
        10.0, "how often each server reads etcd's database size", parse=parse_duration
    )
    max_blocking_wait: float = opt(
        600.0,
        "longest a blocking query may wait (Consul: 10m); longer `wait`s, and the 5m default "
        "wait, are cut to it",
        parse=parse_duration,
    )
    session_min_ttl: float = opt(
        10.0, "shortest session TTL accepted (Consul: 10s)", parse=parse_duration
    )
    metrics_resolution: float = opt(
        10.0,
        "spacing of the metrics samples kept for the last five minutes (1s-60s); windows "
        "are answered to this resolution",
        parse=parse_duration,
    )
    metrics_min_interval: float = opt(
        5.0,
        "shortest time between two metrics pushes of one node (sooner: 429)",
        parse=parse_duration,
    )
    metrics_sample_bytes: int = opt(
        64 << 10, "largest metrics push stored per node (encoded); bigger ones get 413"
    )
    dns_listen: str = opt(
        "127.0.0.1:8600", "address of the DNS interface, UDP and TCP (empty: no DNS)"
    )
    dns_domain: str = opt("consul", "the DNS domain answered for (others are refused)")
    dns_service_ttl: float = opt(0.0, "TTL of service answers (seconds)", parse=parse_duration)
    dns_node_ttl: float = opt(0.0, "TTL of node answers (seconds)", parse=parse_duration)
    dns_include_warning: bool = opt(
        False, "DNS answers include instances whose checks warn (not only passing ones)"
    )
    intention_default: str = opt(
        "allow",
        "what a call between two services gets when no intention matches: allow or deny "
        "(the same on every server; docs/security.md says how to move from allow to deny)",
    )
    ca_kek_file: str = opt(
        "", "file holding the CA's key-encryption key (32 bytes, base64); or set WEFT_SERVER_CA_KEK"
    )
    ca_kek: str = opt(
        "", "the CA's key-encryption key itself (prefer the environment variable)", secret=True
    )
    ca_leaf_ttl: float = opt(
        86400.0, "default lifetime of mesh certificates (1h-30d)", parse=parse_duration
    )
    ca_allow_short_leaves: bool = opt(
        False, "allow certificate lifetimes down to 30s (tests and demos)"
    )
    ca_sign_rate: float = opt(100.0, "certificate signings per second allowed per token")
    ca_sign_burst: float = opt(200.0, "burst of signings allowed per token")
    bootstrap: bool = opt(False, "create the first operator token and print it once")
    bootstrap_token_file: str = opt(
        "", "write the bootstrap (or recovered) operator token to this file (mode 0600)"
    )
    recover_operator: bool = opt(
        False,
        "mint a new operator token if none is left, then exit (needs this server's etcd "
        "access and CA key-encryption key; binds no port)",
    )
    ready_file: str = opt("", "write {address, pid} as JSON here once serving")
    grace: float = opt(10.0, "seconds in-flight requests get on shutdown", parse=parse_duration)
    log_format: str = opt("text", "log line format: text or json")
    log_level: str = opt("info", "debug, info, warning or error")

    def validate(self) -> None:
        split_host_port(self.listen, "listen")
        if self.advertise:
            split_host_port(self.advertise, "advertise")
        if not self.etcd_endpoints:
            raise ConfigError("etcd_endpoints", "at least one etcd URL is required")
        for url in self.etcd_endpoints:
            if not url.startswith(("http://", "https://")):
                raise ConfigError("etcd_endpoints", f"{url!r} is not an http(s):// URL")
        if not (self.etcd_prefix.startswith("/") and self.etcd_prefix.endswith("/")):
            raise ConfigError("etcd_prefix", f"{self.etcd_prefix!r} must start and end with '/'")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("tls_key_file", "give both --tls-cert-file and --tls-key-file")
        if bool(self.etcd_cert_file) != bool(self.etcd_key_file):
            raise ConfigError("etcd_key_file", "give both --etcd-cert-file and --etcd-key-file")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes", "must be at least 1024")
        problem = connection_settings_problem(self)
        if problem:
            raise ConfigError(*problem)
        if self.view_cache_bytes < 0:
            raise ConfigError("view_cache_bytes", "must be 0 (no cache) or more")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format", "must be text or json")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level", "must be debug, info, warning or error")
        if self.ca_kek_file and self.ca_kek:
            raise ConfigError("ca_kek", "give the key-encryption key once: a file or the value")
        if self.ca_sign_rate <= 0 or self.ca_sign_burst < 1:
            raise ConfigError("ca_sign_rate", "rate must be positive and burst at least 1")
        if self.recover_operator and self.bootstrap:
            raise ConfigError(
                "recover_operator", "give --bootstrap or --recover-operator, not both"
            )
        if self.staleness_bound <= 0:
            raise ConfigError("staleness_bound", "must be positive")
        if self.compaction_retention < 0:
            raise ConfigError("compaction_retention", "must be 0 (off) or positive")
        if self.compaction_interval <= 0:
            raise ConfigError("compaction_interval", "must be positive")
        if self.etcd_quota_bytes < 0:
            raise ConfigError("etcd_quota_bytes", "must be 0 (unknown) or positive")
        if self.etcd_status_interval <= 0:
            raise ConfigError("etcd_status_interval", "must be positive")
        if not 0 < self.max_blocking_wait <= 86400:
            raise ConfigError("max_blocking_wait", "must be more than 0s and at most 24h")
        if not 1 <= self.session_min_ttl <= 86400:
            raise ConfigError("session_min_ttl", "must be between 1s and 24h")
        if not 1 <= self.metrics_resolution <= 60:
            raise ConfigError("metrics_resolution", "must be between 1s and 60s")
        if not 0.5 <= self.metrics_min_interval <= 60:
            raise ConfigError("metrics_min_interval", "must be between 0.5s and 60s")
        if not 1024 <= self.metrics_sample_bytes <= 1 << 20:
            raise ConfigError("metrics_sample_bytes", "must be between 1 KiB and 1 MiB")
        if self.dns_listen:
            split_host_port(self.dns_listen, "dns_listen")
        if not 0 <= self.dns_service_ttl <= 86400 or not 0 <= self.dns_node_ttl <= 86400:
            raise ConfigError("dns_service_ttl", "DNS TTLs must be between 0s and 24h")
        if not self.dns_domain.strip(".") or " " in self.dns_domain:
            raise ConfigError("dns_domain", f"{self.dns_domain!r} is not a domain name")
        if self.intention_default not in ("allow", "deny"):
            raise ConfigError(
                "intention_default", f"{self.intention_default!r} is not allow or deny"
            )
        for network in self.check_allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    "check_allow_networks", f"{network!r} is not a network like 10.0.0.0/8"
                ) from None
        if self.reap_interval <= 0:
            raise ConfigError("reap_interval", "must be positive")
