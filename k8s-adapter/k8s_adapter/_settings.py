"""`weft k8s-adapter` settings: a typed dataclass the CLI fills from file, env and flags.

Every field carries the metadata `weft._settings` reads (`help`, `parse`, `secret`), so the
CLI gets one flag and one `WEFT_K8S_<FIELD>` variable per field without this package
importing the CLI. `validate()` raises ConfigError naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ca import InvalidIdentity, check_trust_domain, is_dns_label

# One duration syntax everywhere (Go's, as Consul and the registry take it).
from registry.validation import parse_duration as parse_duration

from ._errors import ConfigError


def opt(default: Any, help: str, **extra: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def split_host_port(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(field, f"{value!r} is not host:port (e.g. 0.0.0.0:9610)")
    return host.strip("[]") or "0.0.0.0", int(port)


TEMPLATE_FIELDS = ("name", "namespace", "cluster")


@dataclass(frozen=True)
class AdapterSettings:
    cluster: str = opt("", "this cluster's name: its registry entries carry source k8s/<cluster>")
    registry: tuple[str, ...] = opt(
        ("http://127.0.0.1:8500",), "registry server URLs, comma-separated"
    )
    registry_token: str = opt(
        "",
        "adapter token bound to source k8s/<cluster> (prefer the environment or a file)",
        secret=True,
    )
    registry_token_file: str = opt("", "file holding the registry token (re-read on SIGHUP)")
    registry_ca_file: str = opt("", "CA bundle to verify the registry's TLS certificate")
    kubeconfig: str = opt(
        "",
        "kubeconfig file (default: in-cluster service account, else $KUBECONFIG, else "
        "~/.kube/config)",
    )
    kube_context: str = opt("", "kubeconfig context (default: its current-context)")
    namespaces: tuple[str, ...] = opt((), "sync only these namespaces (default: all)")
    exclude_namespaces: tuple[str, ...] = opt(
        ("kube-system", "kube-public", "kube-node-lease"), "never sync these namespaces"
    )
    default_sync: bool = opt(
        True, "sync Services that carry no weft.io/sync annotation (else only 'true' ones)"
    )
    name_template: str = opt(
        "{name}-{namespace}",
        "Weft service name of a Kubernetes Service; placeholders {name}, {namespace}, "
        "{cluster}. Traffic CRDs' hosts name services by it too",
    )
    trust_domain: str = opt(
        "", "SPIFFE trust domain of pods with a Weft sidecar (as given to `weft ca init`)"
    )
    resync: float = opt(300.0, "full resync of both sides this often", parse=parse_duration)
    batch_size: int = opt(500, "registry entries per batch request (at most 5000)")
    coalesce: float = opt(
        0.05, "gather Kubernetes changes this long before writing them", parse=parse_duration
    )
    watch_timeout: float = opt(
        300.0, "server-side watch timeout; the watch resumes after it", parse=parse_duration
    )
    leader_elect: bool = opt(True, "elect one writer among replicas with a Lease")
    lease_name: str = opt("", "Lease name (default: weft-k8s-adapter-<cluster>)")
    lease_namespace: str = opt(
        "", "namespace of the Lease (default: the pod's own namespace, else weft-system)"
    )
    lease_duration: float = opt(
        15.0, "how long a leader's Lease holds without renewal", parse=parse_duration
    )
    renew_deadline: float = opt(
        10.0, "a leader that cannot renew for this long stops writing", parse=parse_duration
    )
    retry_period: float = opt(2.0, "how often candidates try the Lease", parse=parse_duration)
    identity: str = opt("", "this replica's election identity (default: <hostname>_<pid>)")
    to_k8s: bool = opt(False, "also publish registry services as Services in this cluster")
    to_k8s_namespace: str = opt("weft", "namespace the published Services live in")
    to_k8s_sources: tuple[str, ...] = opt(
        ("agent",), "publish instances registered by these sources"
    )
    to_k8s_tags: tuple[str, ...] = opt((), "publish only instances with one of these tags")
    to_k8s_services: tuple[str, ...] = opt((), "publish only these registry services")
    health_listen: str = opt(
        "127.0.0.1:9610", "address of /healthz, /readyz, /status and /metrics (port 0: any)"
    )
    ready_file: str = opt("", "write {address, pid} as JSON here once serving")
    grace: float = opt(5.0, "seconds a stopping adapter gets to finish", parse=parse_duration)
    log_format: str = opt("text", "log line format: text or json")
    log_level: str = opt("info", "debug, info, warning or error")

    @property
    def source(self) -> str:
        return f"k8s/{self.cluster}"

    @property
    def lease(self) -> str:
        return self.lease_name or f"weft-k8s-adapter-{self.cluster}"

    def validate(self) -> None:
        if not self.cluster:
            raise ConfigError("cluster", "is required (a DNS label such as 'prod-eu1')")
        if not is_dns_label(self.cluster):
            raise ConfigError(
                "cluster", f"{self.cluster!r} is not a DNS label (lowercase letters, digits, '-')"
            )
        if not self.registry:
            raise ConfigError("registry", "at least one registry URL is required")
        for url in self.registry:
            if not url.startswith(("http://", "https://")):
                raise ConfigError("registry", f"{url!r} is not an http(s):// URL")
        if self.registry_token and self.registry_token_file:
            raise ConfigError(
                "registry_token_file", "give either registry_token or registry_token_file"
            )
        for field in ("namespaces", "exclude_namespaces"):
            for ns in getattr(self, field):
                if not is_dns_label(ns):
                    raise ConfigError(field, f"{ns!r} is not a namespace name")
        both = set(self.namespaces) & set(self.exclude_namespaces)
        if both:
            raise ConfigError(
                "exclude_namespaces", f"{', '.join(sorted(both))} is both included and excluded"
            )
        self._validate_template()
        if self.trust_domain:
            try:
                check_trust_domain(self.trust_domain)
            except InvalidIdentity as exc:
                raise ConfigError("trust_domain", str(exc)) from None
        if not 1 <= self.batch_size <= 5000:
            raise ConfigError("batch_size", f"must be 1-5000, got {self.batch_size}")
        for field in ("resync", "watch_timeout", "retry_period", "grace"):
            if getattr(self, field) <= 0:
                raise ConfigError(field, "must be positive")
        if self.coalesce < 0:
            raise ConfigError("coalesce", "must not be negative")
        if self.lease_duration <= self.renew_deadline:
            raise ConfigError("lease_duration", "must be longer than renew_deadline")
        if self.renew_deadline <= self.retry_period * 1.2:
            raise ConfigError("renew_deadline", "must be longer than 1.2 x retry_period")
        if self.lease_namespace and not is_dns_label(self.lease_namespace):
            raise ConfigError("lease_namespace", f"{self.lease_namespace!r} is not a namespace")
        if self.to_k8s and not is_dns_label(self.to_k8s_namespace):
            raise ConfigError("to_k8s_namespace", f"{self.to_k8s_namespace!r} is not a namespace")
        if self.to_k8s and not self.to_k8s_sources:
            raise ConfigError("to_k8s_sources", "name at least one source (e.g. agent)")
        if self.source in self.to_k8s_sources:
            raise ConfigError(
                "to_k8s_sources", f"{self.source} is this adapter's own source: it would loop"
            )
        split_host_port(self.health_listen, "health_listen")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format", "must be text or json")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level", "must be debug, info, warning or error")

    def _validate_template(self) -> None:
        sample = {"name": "web", "namespace": "prod", "cluster": self.cluster or "c1"}
        try:
            rendered = self.name_template.format(**sample)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                "name_template",
                f"{self.name_template!r} is not a template of {{name}}, {{namespace}} and "
                f"{{cluster}}: {exc}",
            ) from None
        if "{name}" not in self.name_template:
            raise ConfigError("name_template", "must contain {name}")
        if not is_dns_label(rendered):
            raise ConfigError(
                "name_template",
                f"renders 'web' in 'prod' as {rendered!r}, which is not a DNS label",
            )
