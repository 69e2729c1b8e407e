"""How Kubernetes names become registry names (pure).

Registry service names are global DNS labels, while a Kubernetes Service name is unique only
within its namespace. The default template `{name}-{namespace}` therefore puts the namespace
into the name: `web` in `prod` is `web-prod`, `web` in `staging` is `web-staging`. The same
Service in the same namespace of another cluster maps to the same name, which is how one
registry service spans clusters (each cluster's instances carry its own source).

A template can still map two Services to one name (`a-b` in `c` and `a` in `b-c` are both
`a-b-c`); ClusterState detects such claims and gives the name to the first Service in
(namespace, name) order, which every replica computes the same way. Names over 63 characters
keep a readable head and end in a hash of the Kubernetes identity, so they stay unique.
The `weft.io/service-name` annotation on a Service overrides the template.
"""

from __future__ import annotations

import hashlib
import re

from ca import is_dns_label

NAME_ANNOTATION = "weft.io/service-name"

_META_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]")
_NODE_BAD = re.compile(r"[^A-Za-z0-9._-]")
_ID_BAD = re.compile(r"[^A-Za-z0-9._:@-]")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def shorten(value: str, limit: int, *, identity: str, joiner: str = "-") -> str:
    """`value` if it fits in `limit`, else a head of it, `joiner` and a hash of `identity`."""
    if len(value) <= limit:
        return value
    digest = _digest(identity, 10)
    head = value[: limit - len(digest) - len(joiner)].rstrip("-.:@_")
    return f"{head}{joiner}{digest}"


class Namer:
    def __init__(self, template: str, cluster: str) -> None:
        self.template = template
        self.cluster = cluster

    def service_name(self, namespace: str, name: str, override: str | None = None) -> str:
        """The registry name of Service `namespace/name`; ValueError if it cannot be one."""
        if override is not None:
            if not is_dns_label(override):
                raise ValueError(
                    f"annotation {NAME_ANNOTATION}={override!r} is not a DNS label "
                    "(lowercase letters, digits, '-'; at most 63)"
                )
            return override
        rendered = self.template.format(name=name, namespace=namespace, cluster=self.cluster)
        rendered = shorten(rendered.lower(), 63, identity=f"{namespace}/{name}")
        if not is_dns_label(rendered):
            raise ValueError(
                f"template {self.template!r} renders {namespace}/{name} as {rendered!r}, "
                "which is not a DNS label"
            )
        return rendered


def instance_id(cluster: str, namespace: str, service: str, target: str, port: int) -> str:
    """Unique per Service and endpoint, and across clusters: `<cluster>:<ns>:<svc>:<pod>:<port>`.

    Colons cannot occur in Kubernetes names, so the parts cannot run into each other. The
    Service is part of it because one pod often backs several Services, and an instance ID
    must be unique on its node across services.
    """
    raw = f"{cluster}:{namespace}:{service}:{target}:{port}"
    clean = _ID_BAD.sub("_", raw)
    return shorten(clean, 128, identity=raw, joiner="@")


def node_name(node: str | None, cluster: str) -> str:
    """A registry node name for a Kubernetes node (`k8s-<cluster>` when the endpoint has none)."""
    if not node:
        return f"k8s-{cluster}"
    clean = _NODE_BAD.sub("_", node)
    return shorten(clean, 128, identity=node)


def meta_key(label: str) -> str:
    """A label key as a registry meta key: `app.kubernetes.io/name` -> `app_kubernetes_io_name`."""
    return shorten(_META_KEY_BAD.sub("_", label), 128, identity=label)
