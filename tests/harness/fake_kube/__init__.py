"""A Kubernetes API server for tests: the real wire protocol over a real HTTP(S) socket.

There is no Kubernetes here, so this is the one fake the project allows. It serves Pods,
Services, Namespaces, EndpointSlices (`discovery.k8s.io/v1`) and Leases
(`coordination.k8s.io/v1`), and once a test installs them (`install_crds`) the traffic CRDs of
Istio, Linkerd, Gateway API and SMI with their discovery documents, on the real REST paths:
lists with `resourceVersion` (and `limit`/`continue` pages), chunked watch streams of
ADDED/MODIFIED/DELETED/BOOKMARK events, 410 Gone after a simulated compaction,
create/replace/delete with optimistic concurrency (409 Conflict), `Status` error objects and
bearer-token authentication.
`tests/integration/test_k8s_fake_api_server.py` proves it with the official `kubernetes` client.

Tests drive the cluster through methods: `add_service` (a Deployment-like set of pods, whose
EndpointSlices this fake maintains as the EndpointSlice controller would), `scale`,
`set_ready`, `compact`, `cut_watches`, `inject` (raw bytes into live watches), `put_raw`.
Objects are stored per group and plural, as on a real API server, so Linkerd's HTTPRoute and
the Gateway API's are served side by side. Methods name a resource as kubectl does: by its
plural (`pods`, `virtualservices`) when one served resource has it, else qualified by its
group (`httproutes.policy.linkerd.io`); an ambiguous plural is an error naming the choices.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._adapter import Adapters, K8sAdapter, adapter_token
from ._crds import TRAFFIC_CRDS, crd
from ._http import ActiveWatch, decode_continue, encode_continue, parse_path, serve
from ._store import ApiError, Obj, Store, gone
from ._validate import validate
from ._workloads import Workloads


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    at: float


class FakeKube(Workloads):
    def __init__(
        self,
        *,
        token: str = "fake-admin-token",
        tls: bool = False,
        bookmark_interval: float = 1.0,
        watch_timeout: float = 300.0,
        gone_as_http_status: bool = False,
    ) -> None:
        self.store = Store()
        self.token = token
        self.tls = tls
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        # A real server answers an expired watch with 200 and an ERROR event; some proxies
        # and older servers answer with HTTP 410 itself. Clients must handle both.
        self.gone_as_http_status = gone_as_http_status
        # While set, new watches are refused with 503 (an overloaded or restarting server),
        # so a test can change the cluster and compact while a client is disconnected.
        self.refuse_watches = False
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._watches: set[ActiveWatch] = set()
        self._snapshots: dict[int, tuple[int, list[Obj]]] = {}
        self._snapshot_ids = itertools.count(1)
        self._httpd: Any = None
        self.url = ""
        self.ca_pem = b""
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKube:
        ssl_context = None
        if self.tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost", "kubernetes.default.svc")
            import ssl

            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(ssl_context)
            self.ca_pem = ca.cert_pem.bytes()
        self._httpd = serve(self, "127.0.0.1", ssl_context)
        port = self._httpd.server_address[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self.cut_watches("reset")
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- credentials -------------------------------------------------------------------------

    def write_kubeconfig(
        self, path: Path, *, context: str = "fake", token: str | None = None
    ) -> Path:
        import base64

        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
        return path

    def write_service_account(self, directory: Path, namespace: str = "weft-system") -> Path:
        """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(self.token)
        (directory / "namespace").write_text(namespace)
        if self.tls:
            (directory / "ca.crt").write_bytes(self.ca_pem)
        return directory

    # -- request log and watches (called by the HTTP handler) --------------------------------

    def log_request(self, method: str, path: str, query: dict[str, str], ua: str) -> None:
        with self._lock:
            self.requests.append(RequestRecord(method, path, query, ua, time.monotonic()))

    def writes(self, *, resource: str | None = None, user_agent: str = "") -> list[RequestRecord]:
        wanted = self._qualified(resource)
        with self._lock:
            records = list(self.requests)
        return [
            r
            for r in records
            if r.method in ("POST", "PUT", "DELETE", "PATCH")
            and (wanted is None or self._resource_of(r.path) == wanted)
            and user_agent in r.user_agent
        ]

    def _resource_of(self, path: str) -> str | None:
        route = parse_path(path, self.store.resources)
        return route.resource.qualified if route else None

    def _qualified(self, resource: str | None) -> str | None:
        return self.store.resource(resource).qualified if resource else None

    def watch_started(self, watch: ActiveWatch) -> None:
        with self._lock:
            self._watches.add(watch)

    def watch_ended(self, watch: ActiveWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def active_watches(self, resource: str | None = None) -> int:
        wanted = self._qualified(resource)
        with self._lock:
            return sum(1 for w in self._watches if wanted is None or w.resource == wanted)

    def cut_watches(self, mode: str = "close", resource: str | None = None) -> int:
        """End live watches: `close` cleanly, `reset` the connection, or send half an event
        first (`garbage`). Returns how many were cut."""
        assert mode in ("close", "reset", "garbage"), mode
        wanted = self._qualified(resource)
        with self._lock:
            chosen = [w for w in self._watches if wanted is None or w.resource == wanted]
        with self.store.cond:
            for w in chosen:
                w.cut = mode
            self.store.cond.notify_all()
        return len(chosen)

    def inject(self, resource: str, line: bytes | str | Obj) -> int:
        """Write `line` (raw, as is) into every live watch of `resource`."""
        if isinstance(line, dict):
            line = json.dumps(line)
        data = line.encode() if isinstance(line, str) else line
        if not data.endswith(b"\n"):
            data += b"\n"
        wanted = self._qualified(resource)
        with self._lock:
            chosen = [w for w in self._watches if w.resource == wanted]
        with self.store.cond:
            for w in chosen:
                w.injected.append(data)
            self.store.cond.notify_all()
        return len(chosen)

    def compact(self) -> int:
        with self._lock:
            self._snapshots.clear()
        return self.store.compact()

    # -- paged lists -------------------------------------------------------------------------

    def remember_list(self, rv: int, items: list[Obj], start: int) -> str:
        # `items` are the list's own copies: the snapshot keeps them as they were listed.
        with self._lock:
            sid = next(self._snapshot_ids)
            self._snapshots[sid] = (rv, items)
        return encode_continue(sid, start)

    def continue_list(self, token: str) -> tuple[int, list[Obj], int]:
        sid, start = decode_continue(token)
        with self._lock:
            snapshot = self._snapshots.get(sid)
        if snapshot is None or snapshot[0] < self.store.oldest:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        rv, items = snapshot
        return rv, items, start

    # -- objects -----------------------------------------------------------------------------

    def validate(self, resource: str, obj: Obj) -> str | None:
        return validate(self.store.resource(resource).qualified, obj)

    def allocate(self, resource: str, obj: Obj, old: Obj | None) -> None:
        """A Service's cluster IP: allocated on create, kept (and immutable) on update."""
        if self.store.resource(resource).qualified != "services":
            return
        spec = obj.setdefault("spec", {})
        old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") and spec["clusterIP"] != old_ip:
            raise ApiError(
                422,
                "Invalid",
                f'Service "{obj["metadata"]["name"]}" is invalid: spec.clusterIP: Invalid value: '
                f'"{spec["clusterIP"]}": field is immutable',
            )
        spec["clusterIP"] = spec.get("clusterIP") or old_ip or self.next_cluster_ip()
        spec["clusterIPs"] = [spec["clusterIP"]]

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        return self.store.get(resource, namespace, name)

    def list(
        self, resource: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Obj]:
        def match(obj: Obj) -> bool:
            have = (obj.get("metadata") or {}).get("labels") or {}
            return all(have.get(k) == v for k, v in (labels or {}).items())

        return self.store.list(resource, namespace, match)[1]

    def apply(self, resource: str, obj: Obj) -> Obj:
        """Create or replace `obj` (as a controller would), bumping its resourceVersion."""
        namespaced = self.store.resource(resource).namespaced
        namespace = obj["metadata"].get("namespace", "") if namespaced else ""
        try:
            return self.store.create(resource, namespace, copy.deepcopy(obj))
        except ApiError as exc:
            if exc.code != 409:
                raise
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        return self.store.update(resource, namespace, body)

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        return self.store.delete(resource, namespace, name)

    def put_raw(self, resource: str, namespace: str, obj: Obj) -> Obj:
        return self.store.put_raw(resource, namespace, copy.deepcopy(obj))

    def install_crds(self, *names: str, version: str | None = None) -> None:
        """Serve these traffic CRDs (default: all of them) from now on, with list/watch.
        A name is a plural one CRD alone has (`virtualservices`), else qualified by its group
        (`httproutes.gateway.networking.k8s.io`, `httproutes.policy.linkerd.io`)."""
        for name in names or tuple(TRAFFIC_CRDS):
            self.store.install(crd(name, version))

    def ensure_namespace(self, name: str) -> None:
        try:
            self.store.create("namespaces", "", {"metadata": {"name": name}})
        except ApiError as exc:
            if exc.code != 409:
                raise

    def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        from .._wait import wait_until

        return wait_until(condition, timeout=timeout, what=what)


__all__ = [
    "Adapters",
    "ApiError",
    "FakeKube",
    "K8sAdapter",
    "RequestRecord",
    "TRAFFIC_CRDS",
    "adapter_token",
    "gone",
]
