"""The fake API server speaks the real wire protocol: the official `kubernetes` client proves it.

Lists with resourceVersion and pages, watches with bookmarks, 410 Gone after compaction (as an
ERROR event and as an HTTP status), Lease CRUD with 409 on a stale resourceVersion, Status
error objects, and the Service/EndpointSlice writes `--to-k8s` makes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.harness import FakeKube, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(fake: FakeKube, tmp_path: Path) -> client.ApiClient:
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    return config.new_client_from_config(config_file=str(kubeconfig))


def test_lists_carry_a_resource_version_and_page_consistently(fake: FakeKube, api) -> None:
    fake.add_service("shop", "web", replicas=5)
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod("shop")
    assert len(pods.items) == 5
    assert int(pods.metadata.resource_version) > 0
    assert all(p.status.pod_ip for p in pods.items)

    first = core.list_pod_for_all_namespaces(limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    fake.scale("shop", "web", 7)  # changes after the first page do not leak into the list
    names = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_pod_for_all_namespaces(limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert len(names) == 5

    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        "shop", label_selector="kubernetes.io/service-name=web"
    )
    (only,) = slices.items
    assert len(only.endpoints) == 7
    assert all(e.conditions.ready for e in only.endpoints)


def test_watch_streams_changes_from_a_version_with_bookmarks(fake: FakeKube, api) -> None:
    fake.add_service("shop", "web", replicas=2)
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_pod("shop").metadata.resource_version
    pod = fake.pods("shop", "web")[0]
    seen: list[tuple[str, str]] = []

    def change_later() -> None:
        wait_until(lambda: fake.active_watches("pods") == 1, what="the watch to start")
        fake.set_ready("shop", pod, False)
        fake.scale("shop", "web", 3)

    thread = threading.Thread(target=change_later)
    thread.start()
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        "shop",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    )
    for event in stream:
        name = (event["raw_object"].get("metadata") or {}).get("name", "")
        seen.append((event["type"], name))
        types = [t for t, _ in seen]
        if "ADDED" in types and "BOOKMARK" in types:
            break
    thread.join()
    assert seen[0] == ("MODIFIED", pod)
    assert ("BOOKMARK", "") in seen
    assert [t for t, _ in seen].count("ADDED") == 1


def test_compaction_makes_an_old_version_gone(fake: FakeKube, api) -> None:
    fake.add_service("shop", "web", replicas=1)
    core = client.CoreV1Api(api)
    old = core.list_namespaced_pod("shop").metadata.resource_version
    fake.scale("shop", "web", 2)
    fake.compact()
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            core.list_namespaced_pod, "shop", resource_version=old, timeout_seconds=2
        ):
            pass
    assert gone.value.status == 410
    assert "Expired" in gone.value.reason

    fake.gone_as_http_status = True
    with pytest.raises(ApiException) as http_gone:
        core.list_namespaced_pod("shop", watch=True, resource_version=old, timeout_seconds=2)
    assert http_gone.value.status == 410
    assert '"reason":"Expired"' in http_gone.value.body

    # A relist gives a current version from which watching works again.
    fresh = core.list_namespaced_pod("shop").metadata.resource_version
    fake.scale("shop", "web", 3)
    events = watch.Watch().stream(
        core.list_namespaced_pod, "shop", resource_version=fresh, timeout_seconds=2
    )
    assert next(iter(events))["type"] == "ADDED"


def test_lease_crud_with_optimistic_concurrency(fake: FakeKube, api) -> None:
    fake.ensure_namespace("weft-system")
    coord = client.CoordinationV1Api(api)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="adapter", namespace="weft-system"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    created = coord.create_namespaced_lease("weft-system", body)
    assert created.spec.holder_identity == "a"
    with pytest.raises(ApiException) as exists:
        coord.create_namespaced_lease("weft-system", body)
    assert exists.value.status == 409 and '"reason":"AlreadyExists"' in exists.value.body

    lease = coord.read_namespaced_lease("adapter", "weft-system")
    lease.spec.holder_identity = "b"
    updated = coord.replace_namespaced_lease("adapter", "weft-system", lease)
    assert int(updated.metadata.resource_version) > int(lease.metadata.resource_version)

    lease.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as conflict:
        coord.replace_namespaced_lease("adapter", "weft-system", lease)
    assert conflict.value.status == 409 and '"reason":"Conflict"' in conflict.value.body
    assert coord.read_namespaced_lease("adapter", "weft-system").spec.holder_identity == "b"

    coord.delete_namespaced_lease("adapter", "weft-system")
    with pytest.raises(ApiException) as missing:
        coord.read_namespaced_lease("adapter", "weft-system")
    assert missing.value.status == 404 and '"kind":"Status"' in missing.value.body


def test_selectorless_service_and_endpoint_slice_writes(fake: FakeKube, api) -> None:
    fake.ensure_namespace("weft")
    core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    svc = core.create_namespaced_service(
        "weft",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="billing"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80)]),
        ),
    )
    assert svc.spec.cluster_ip
    eps = disc.create_namespaced_endpoint_slice(
        "weft",
        client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name="billing-1", labels={"kubernetes.io/service-name": "billing"}
            ),
            address_type="IPv4",
            endpoints=[
                client.V1Endpoint(
                    addresses=["192.0.2.10"], conditions=client.V1EndpointConditions(ready=True)
                )
            ],
            ports=[client.DiscoveryV1EndpointPort(name="http", port=8080)],
        ),
    )
    assert eps.endpoints[0].addresses == ["192.0.2.10"]
    svc.spec.cluster_ip = "10.0.0.1"
    with pytest.raises(ApiException) as immutable:
        core.replace_namespaced_service("billing", "weft", svc)
    assert immutable.value.status == 422 and "immutable" in immutable.value.body
    bad = client.V1Service(
        metadata=client.V1ObjectMeta(name="9bad"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_service("weft", bad)
    assert invalid.value.status == 422 and '"reason":"Invalid"' in invalid.value.body
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_service(
            "nowhere",
            client.V1Service(
                metadata=client.V1ObjectMeta(name="x"),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
            ),
        )
    assert no_ns.value.status == 404
    disc.delete_namespaced_endpoint_slice("billing-1", "weft")
    core.delete_namespaced_service("billing", "weft")
    assert core.list_namespaced_service("weft").items == []


def test_requests_without_the_token_are_unauthorized(fake: FakeKube, tmp_path: Path) -> None:
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", token="wrong")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).list_namespaced_pod("default")
    assert denied.value.status == 401


def test_tls_and_service_account_files_work_like_in_cluster(tmp_path: Path) -> None:
    with FakeKube(tls=True) as fake:
        sa = fake.write_service_account(tmp_path / "sa")
        fake.add_service("shop", "web", replicas=1)
        configuration = client.Configuration()
        configuration.host = fake.url
        configuration.ssl_ca_cert = str(sa / "ca.crt")
        configuration.api_key = {"authorization": "Bearer " + (sa / "token").read_text()}
        api = client.ApiClient(configuration)
        assert len(client.CoreV1Api(api).list_namespaced_pod("shop").items) == 1


VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews"},
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
}


def test_traffic_crds_are_discovered_listed_and_watched_once_installed(fake: FakeKube, api) -> None:
    custom = client.CustomObjectsApi(api)
    group, version, plural = "networking.istio.io", "v1", "virtualservices"
    served = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert group not in served
    with pytest.raises(ApiException) as missing:  # no CRD: the group-version is not served
        custom.get_api_resources(group, version)
    assert missing.value.status == 404
    with pytest.raises(ApiException):
        custom.list_cluster_custom_object(group, version, plural)

    fake.install_crds("virtualservices", "destinationrules")
    assert group in {g.name for g in client.ApisApi(api).get_api_versions().groups}
    names = {r.name for r in custom.get_api_resources(group, version).resources}
    assert names == {"virtualservices", "destinationrules"}

    fake.ensure_namespace("default")
    made = custom.create_namespaced_custom_object(group, version, "default", plural, VS)
    listed = custom.list_cluster_custom_object(group, version, plural)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]
    rv = listed["metadata"]["resourceVersion"]
    seen: list[str] = []

    def change_later() -> None:
        wait_until(lambda: fake.active_watches(plural) == 1, what="the watch to start")
        body = dict(made, spec={**VS["spec"], "hosts": ["reviews", "ratings"]})
        custom.replace_namespaced_custom_object(group, version, "default", plural, "reviews", body)
        custom.delete_namespaced_custom_object(group, version, "default", plural, "reviews")
        fake.apply(plural, {**VS, "metadata": {"name": "again", "namespace": "default"}})

    thread = threading.Thread(target=change_later)
    thread.start()
    stream = watch.Watch().stream(
        custom.list_cluster_custom_object,
        group,
        version,
        plural,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    )
    for event in stream:
        seen.append(event["type"])
        if seen.count("ADDED") and "BOOKMARK" in seen:
            break
    thread.join()
    assert [t for t in seen if t != "BOOKMARK"] == ["MODIFIED", "DELETED", "ADDED"]
    assert "BOOKMARK" in seen


def _http_route(group: str, version: str, service: str) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "HTTPRoute",
        "metadata": {"name": "books"},
        "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": service}]},
    }


def test_two_groups_with_one_plural_are_two_resources(fake: FakeKube, api) -> None:
    """Gateway API's and Linkerd's `httproutes` share a plural: like a real API server, the
    fake keeps them apart by group, so objects of one name live in both and each path, list
    and watch sees only its own group's."""
    custom = client.CustomObjectsApi(api)
    gateway = ("gateway.networking.k8s.io", "v1")
    linkerd = ("policy.linkerd.io", "v1beta3")
    fake.install_crds("httproutes.gateway.networking.k8s.io", "httproutes.policy.linkerd.io")
    for group, version in (gateway, linkerd):
        (served,) = custom.get_api_resources(group, version).resources
        assert (served.name, served.kind) == ("httproutes", "HTTPRoute")
    fake.ensure_namespace("shop")
    custom.create_namespaced_custom_object(
        *gateway, "shop", "httproutes", _http_route(*gateway, "web")
    )
    custom.create_namespaced_custom_object(
        *linkerd, "shop", "httproutes", _http_route(*linkerd, "api")
    )

    for (group, version), service in ((gateway, "web"), (linkerd, "api")):
        got = custom.get_namespaced_custom_object(group, version, "shop", "httproutes", "books")
        assert got["apiVersion"] == f"{group}/{version}"
        assert got["spec"]["parentRefs"][0]["name"] == service
        listed = custom.list_cluster_custom_object(group, version, "httproutes")
        assert [i["spec"]["parentRefs"][0]["name"] for i in listed["items"]] == [service]
    # A body of the other group is refused on this group's path, as the API server does.
    with pytest.raises(ApiException) as wrong:
        custom.create_namespaced_custom_object(
            *linkerd,
            "shop",
            "httproutes",
            {**_http_route(*gateway, "web"), "metadata": {"name": "x"}},
        )
    assert wrong.value.status == 400

    rv = custom.list_cluster_custom_object(*linkerd, "httproutes")["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    def change_later() -> None:
        wait_until(lambda: fake.active_watches("httproutes.policy.linkerd.io") == 1, what="watch")
        custom.delete_namespaced_custom_object(*gateway, "shop", "httproutes", "books")
        custom.delete_namespaced_custom_object(*linkerd, "shop", "httproutes", "books")

    thread = threading.Thread(target=change_later)
    thread.start()
    stream = watch.Watch().stream(
        custom.list_cluster_custom_object,
        *linkerd,
        "httproutes",
        resource_version=rv,
        timeout_seconds=5,
    )
    for event in stream:
        seen.append((event["type"], event["object"]["apiVersion"]))
        if event["type"] == "DELETED":
            break
    thread.join()
    assert seen == [("DELETED", "policy.linkerd.io/v1beta3")]  # not the Gateway API's
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(*gateway, "shop", "httproutes", "books")
    assert missing.value.status == 404
    assert missing.value.body and '"group":"gateway.networking.k8s.io"' in missing.value.body

    # A plural two served groups share is ambiguous to the test's own calls: it must say which.
    with pytest.raises(ValueError) as ambiguous:
        fake.list("httproutes")
    assert "httproutes.gateway.networking.k8s.io, httproutes.policy.linkerd.io" in str(
        ambiguous.value
    )
