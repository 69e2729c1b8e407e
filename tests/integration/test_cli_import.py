"""`weft apply`, `convert`, `diff` and `get` with other meshes' documents as written: mixed
with weft.dev/v1 ones, warned about by field, refused whole under `--strict` (nothing stored,
read back from etcd), and shown compiled by `weft get route NAME -o yaml`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry.etcd import EtcdClient
from tests.harness import WeftServer

from .test_cli_registry import weft
from .test_cli_traffic import cli, stored_keys

pytestmark = pytest.mark.timeout(90)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "importers"
CORS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
    corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
---
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: reviews-v2}
spec: {service: reviews, subset: v2, tags: [v2]}
"""


def test_convert_prints_the_weft_resources_without_a_server(tmp_path: Path) -> None:
    source = GOLDEN / "virtualservice" / "talk-reviews-50-50.yaml"
    done = weft(
        "convert",
        "-f",
        str(source),
        "-f",
        str(GOLDEN / "destinationrule" / "istio-bookinfo-reviews.yaml"),
    )
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    expected = yaml.safe_load(source.with_name("talk-reviews-50-50.expected.yaml").read_text())
    assert docs[0] == expected["resources"][0]
    assert {d["kind"] for d in docs} == {"Route", "Subset"}
    assert "note: VirtualService reviews: http[0].retries: absent" in done.stderr


async def test_strict_refuses_a_warned_document_and_stores_nothing(
    server: WeftServer, tmp_path: Path, etcd_client: EtcdClient, prefix: str
) -> None:
    path = tmp_path / "reviews.yaml"
    path.write_text(CORS)
    done = cli(server, "apply", "--strict", "-f", str(path))
    assert done.returncode == 65
    assert "VirtualService reviews: http[0].corsPolicy is not supported and is ignored" in (
        done.stderr
    )
    assert await stored_keys(etcd_client, prefix) == []


async def test_apply_mixed_documents_warns_by_field_and_get_shows_the_compiled_route(
    server: WeftServer, tmp_path: Path, etcd_client: EtcdClient, prefix: str
) -> None:
    path = tmp_path / "reviews.yaml"
    path.write_text(CORS)
    done = cli(server, "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr
    assert (
        "warning: VirtualService reviews: http[0].corsPolicy is not supported and is ignored"
        in done.stderr
    )
    assert "Route/reviews created" in done.stdout and "Subset/reviews-v2 created" in done.stdout
    assert await stored_keys(etcd_client, prefix) == [
        "config/Route/reviews",
        "config/Subset/reviews-v2",
    ]
    shown = cli(server, "get", "route", "reviews", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    route = yaml.safe_load(shown.stdout)
    assert route["spec"]["unmatched"] == "reject"
    assert route["spec"]["rules"][0]["backends"] == [{"service": "reviews", "subset": "v2"}]
    same = cli(server, "diff", "-f", str(path))
    assert same.returncode == 0, same.stdout + same.stderr


async def test_a_document_that_cannot_be_imported_is_refused_by_name(
    server: WeftServer, tmp_path: Path, etcd_client: EtcdClient, prefix: str
) -> None:
    path = tmp_path / "multicluster.yaml"
    path.write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: foo-route}\n"
        "spec:\n  parentRefs:\n  - {group: multicluster.x-k8s.io, kind: ServiceImport, name: foo}\n"
        "  rules:\n  - backendRefs: [{name: foo}]\n"
    )
    done = cli(server, "apply", "-f", str(path))
    assert done.returncode == 65
    assert "HTTPRoute foo-route: spec.parentRefs: no Service or Gateway parent" in done.stderr
    assert await stored_keys(etcd_client, prefix) == []
