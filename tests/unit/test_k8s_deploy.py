"""The adapter's deploy/ manifests: valid against the Kubernetes schemas (kubernetes-validate,
strict), least-privilege RBAC, probes the adapter answers, and settings that exist."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s_adapter import AdapterSettings
from k8s_adapter._objects import ENDPOINT_SLICES, LEASES, PODS, SERVICES
from k8s_adapter._status_http import StatusServer
from k8s_adapter._traffic_objects import TRAFFIC_KINDS

DEPLOY = Path(__file__).resolve().parents[2] / "k8s-adapter" / "deploy"
K8S_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


@pytest.mark.parametrize(
    ("name", "doc"),
    documents(),
    ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in documents()],
)
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"secret.example.yaml"}


def _rules() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for doc in by_kind("ClusterRole") + by_kind("Role"):
        for rule in doc["rules"]:
            out.append((doc["kind"], doc["metadata"].get("namespace", ""), rule))
    return out


def test_rbac_is_least_privilege() -> None:
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    read = {(k.group, k.plural) for k in (SERVICES, ENDPOINT_SLICES, PODS)}
    granted_reads = set()
    for kind, namespace, rule in _rules():
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if kind == "ClusterRole":
            assert not writes & set(rule["verbs"]), "cluster-wide rules must be read-only"
            granted_reads |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
        elif set(rule["verbs"]) & writes:
            assert namespace in ("weft", "weft-system")
            if namespace == "weft-system":  # only the Lease
                assert rule["apiGroups"] == [LEASES.group] and rule["resources"] == ["leases"]
            else:
                assert set(rule["resources"]) <= {"services", "endpointslices"}
            assert "patch" not in rule["verbs"] and "deletecollection" not in rule["verbs"]
    assert granted_reads == read | {(c.group, c.plural) for c in TRAFFIC_KINDS}
    (leader,) = [d for d in by_kind("Role") if d["metadata"]["name"].endswith("leader")]
    updates = [r for r in leader["rules"] if "update" in r["verbs"]]
    assert updates and all(r.get("resourceNames") for r in updates)


def test_traffic_crds_are_granted_exactly_get_list_watch_and_nothing_more() -> None:
    expected = {
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "destinationrules"),
        ("networking.istio.io", "serviceentries"),
        ("linkerd.io", "serviceprofiles"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("policy.linkerd.io", "httproutes"),
        ("split.smi-spec.io", "trafficsplits"),
        ("specs.smi-spec.io", "httproutegroups"),
    }
    assert {(c.group, c.plural) for c in TRAFFIC_KINDS} == expected  # what the adapter watches
    granted: dict[tuple[str, str], set[str]] = {}
    for _, _, rule in _rules():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if group in {g for g, _ in expected}:
                    assert not rule.get("resourceNames")
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == {pair: {"get", "list", "watch"} for pair in expected}
    # Only the ClusterRole names these groups; no Role adds to them in a namespace.
    cluster = {g for doc in by_kind("ClusterRole") for r in doc["rules"] for g in r["apiGroups"]}
    for doc in by_kind("Role"):
        assert not {g for r in doc["rules"] for g in r["apiGroups"]} & {g for g, _ in expected}
    assert {g for g, _ in expected} <= cluster


def test_deployment_runs_the_adapter_with_probes_resources_and_a_secret() -> None:
    (deployment,) = by_kind("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["k8s-adapter"]
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )
    server = StatusServer(ready=lambda: True, status=dict, metrics=str)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert server.respond("GET", path).status == 200
    env = {e["name"]: e for e in container["env"]}
    token = env["WEFT_K8S_REGISTRY_TOKEN"]["valueFrom"]["secretKeyRef"]
    (secret,) = by_kind("Secret")
    assert token["name"] == secret["metadata"]["name"] and token["key"] in secret["stringData"]
    settings = {f"WEFT_K8S_{f.name.upper()}" for f in dataclasses.fields(AdapterSettings)}
    assert set(env) <= settings, set(env) - settings
    listen = env["WEFT_K8S_HEALTH_LISTEN"]["value"]
    assert int(listen.rsplit(":", 1)[1]) == container["ports"][0]["containerPort"]
    assert pod["serviceAccountName"] == by_kind("ServiceAccount")[0]["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_lease_name_in_rbac_matches_the_cluster_in_the_deployment() -> None:
    (deployment,) = by_kind("Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    settings = AdapterSettings(cluster=env["WEFT_K8S_CLUSTER"])
    (leader,) = [d for d in by_kind("Role") if d["metadata"]["name"].endswith("leader")]
    names = {n for r in leader["rules"] for n in r.get("resourceNames", ())}
    assert names == {settings.lease}
    publish = [d for d in by_kind("Role") if d["metadata"]["name"].endswith("publish")]
    assert publish[0]["metadata"]["namespace"] == env["WEFT_K8S_TO_K8S_NAMESPACE"]
