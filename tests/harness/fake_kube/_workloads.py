"""What kubelets and controllers would do: pods of a Service, and its EndpointSlices.

`add_service` makes a Service selecting `app=<name>` with that many running pods; `scale`,
`set_ready` and `delete_service` change them; after each change the EndpointSlices are
recomputed the way the EndpointSlice controller does it (at most 100 endpoints a slice,
ready from the pod's Ready condition), and only slices whose content changed are written.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

Obj = dict[str, Any]

CONTROLLER = "endpointslice-controller.k8s.io"
MAX_PER_SLICE = 100


class Workloads(ABC):
    """Mixed into FakeKube, which provides the store and the two writes below."""

    store: Store

    def __init__(self) -> None:
        self._ips = itertools.count(1)
        self._pod_names = itertools.count(1)
        self.nodes = ["node-a", "node-b", "node-c"]
        self._templates: dict[tuple[str, str], Obj] = {}

    @abstractmethod
    def ensure_namespace(self, name: str) -> None: ...

    @abstractmethod
    def apply(self, resource: str, obj: Obj) -> Obj: ...

    # -- services ----------------------------------------------------------------------------

    def add_service(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        port: int = 80,
        target_port: int = 8080,
        port_name: str = "http",
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        pod_labels: dict[str, str] | None = None,
        pod_annotations: dict[str, str] | None = None,
        ready: bool = True,
    ) -> Obj:
        self.ensure_namespace(namespace)
        service = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels or {}),
                "annotations": dict(annotations or {}),
            },
            "spec": {
                "selector": {"app": name},
                "clusterIP": self.next_cluster_ip(),
                "ports": [
                    {"name": port_name, "port": port, "targetPort": target_port, "protocol": "TCP"}
                ],
            },
        }
        stored = self.apply("services", service)
        template = {
            "labels": {"app": name, **(pod_labels or {})},
            "annotations": dict(pod_annotations or {}),
            "port": target_port,
        }
        self._templates[(namespace, name)] = template
        for _ in range(replicas):
            self._create_pod(namespace, template, ready)
        self.reconcile_slices(namespace, name)
        return stored

    def next_cluster_ip(self) -> str:
        n = next(self._ips)
        return f"10.96.{(n >> 8) & 255}.{n & 255}"

    def _create_pod(self, namespace: str, template: Obj, ready: bool) -> Obj:
        n = next(self._ips)
        ip = f"10.{64 + ((n >> 16) & 63)}.{(n >> 8) & 255}.{n & 255}"
        index = next(self._pod_names)
        node = self.nodes[index % len(self.nodes)]
        pod = {
            "metadata": {
                "name": f"{template['labels']['app']}-{index:05d}",
                "namespace": namespace,
                "labels": dict(template["labels"]),
                "annotations": dict(template["annotations"]),
            },
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.example/app:1",
                        "ports": [{"containerPort": template["port"]}],
                    }
                ],
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": f"192.168.0.{1 + self.nodes.index(node)}",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        return self.apply("pods", pod)

    def pods(self, namespace: str, service: str) -> list[str]:
        selector = self._selector(namespace, service)
        return [p["metadata"]["name"] for p in self._selected_pods(namespace, selector)]

    def scale(self, namespace: str, service: str, replicas: int, *, ready: bool = True) -> None:
        template = self._templates[(namespace, service)]
        names = self.pods(namespace, service)
        for _ in range(replicas - len(names)):
            self._create_pod(namespace, template, ready)
        for name in reversed(names[replicas:] if replicas < len(names) else []):
            self.store.delete("pods", namespace, name)
        self.reconcile_slices(namespace, service)

    def set_ready(self, namespace: str, pod: str, ready: bool) -> None:
        obj = self.store.get("pods", namespace, pod)
        obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        obj["metadata"].pop("resourceVersion", None)
        self.store.update("pods", namespace, obj)
        for service in self._services_selecting(namespace, obj):
            self.reconcile_slices(namespace, service)

    def set_pod(
        self,
        namespace: str,
        pod: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        obj = self.store.get("pods", namespace, pod)
        if labels is not None:
            obj["metadata"]["labels"] = labels
        if annotations is not None:
            obj["metadata"]["annotations"] = annotations
        obj["metadata"].pop("resourceVersion", None)
        self.store.update("pods", namespace, obj)
        for service in self._services_selecting(namespace, obj):
            self.reconcile_slices(namespace, service)

    def delete_service(self, namespace: str, service: str) -> None:
        names = self.pods(namespace, service)
        self.store.delete("services", namespace, service)
        for slice_ in self._slices_of(namespace, service):
            self.store.delete("endpointslices", namespace, slice_["metadata"]["name"])
        for name in names:
            self.store.delete("pods", namespace, name)

    # -- the EndpointSlice controller --------------------------------------------------------

    def _selector(self, namespace: str, service: str) -> dict[str, str]:
        svc = self.store.get("services", namespace, service)
        return dict((svc.get("spec") or {}).get("selector") or {})

    def _selected_pods(self, namespace: str, selector: dict[str, str]) -> list[Obj]:
        if not selector:
            return []

        def match(obj: Obj) -> bool:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            return all(labels.get(k) == v for k, v in selector.items())

        return self.store.list("pods", namespace, match)[1]

    def _services_selecting(self, namespace: str, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        out = []
        for svc in self.store.list("services", namespace)[1]:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append(svc["metadata"]["name"])
        # A pod whose labels changed may have left a service it was in.
        for svc_ns, svc_name in self._templates:
            if svc_ns == namespace and svc_name not in out:
                out.append(svc_name)
        return out

    def _slices_of(self, namespace: str, service: str) -> list[Obj]:
        def match(obj: Obj) -> bool:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            return (
                labels.get("kubernetes.io/service-name") == service
                and labels.get("endpointslice.kubernetes.io/managed-by") == CONTROLLER
            )

        return self.store.list("endpointslices", namespace, match)[1]

    def reconcile_slices(self, namespace: str, service: str) -> None:
        try:
            svc = self.store.get("services", namespace, service)
        except Exception:
            return
        spec = svc.get("spec") or {}
        pods = self._selected_pods(namespace, spec.get("selector") or {})
        svc_port = (spec.get("ports") or [{}])[0]
        endpoints = []
        for pod in pods:
            status = pod.get("status") or {}
            if not status.get("podIP"):
                continue
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            endpoints.append(
                {
                    "addresses": [status["podIP"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "nodeName": (pod.get("spec") or {}).get("nodeName"),
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": namespace,
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                }
            )
        chunks = [endpoints[i : i + MAX_PER_SLICE] for i in range(0, len(endpoints), MAX_PER_SLICE)]
        existing = {s["metadata"]["name"]: s for s in self._slices_of(namespace, service)}
        wanted = {}
        for i, chunk in enumerate(chunks or [[]]):
            wanted[f"{service}-{i:03d}"] = chunk
        for slice_name, chunk in wanted.items():
            body = {
                "metadata": {
                    "name": slice_name,
                    "namespace": namespace,
                    "labels": {
                        "kubernetes.io/service-name": service,
                        "endpointslice.kubernetes.io/managed-by": CONTROLLER,
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "name": service,
                            "uid": svc["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "endpoints": chunk,
                "ports": [
                    {
                        "name": svc_port.get("name", ""),
                        "port": svc_port.get("targetPort", svc_port.get("port")),
                        "protocol": "TCP",
                    }
                ],
            }
            old = existing.get(slice_name)
            if (
                old is not None
                and old.get("endpoints") == chunk
                and old.get("ports") == body["ports"]
            ):
                continue
            self.apply("endpointslices", body)
        for slice_name in existing:
            if slice_name not in wanted:
                self.store.delete("endpointslices", namespace, slice_name)
