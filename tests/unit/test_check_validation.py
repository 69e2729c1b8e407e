"""What the prober cannot run is refused at registration, naming the field; what slips past
anyway (a record written by an older version) becomes a critical result, never an exception.
Identifiers are matched whole: a trailing newline is not a valid name."""

from __future__ import annotations

import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry import _probe_targets as _targets
from registry._consul_input import registration_from_consul
from registry._validate import CheckRules, build_check
from registry.checks import Check, Status, probe, probe_exec, probe_http, probe_tcp
from registry.validation import (
    InvalidInput,
    address,
    identity,
    instance_id,
    kind,
    meta,
    namespace,
    node_name,
    service_name,
    source,
)
from registry.web import Router

LONG_LABEL = "a" * 64
RULES = CheckRules()


def check(**spec) -> Check:
    return build_check(
        spec,
        field="Check",
        check_id="c1",
        node="n1",
        service="web",
        instance="web-1",
        runner="server",
        rules=RULES,
    )


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"http": "http://h:1:/", "interval": 10}, "Check.http", "port"),
        ({"http": "http://h:0/", "interval": 10}, "Check.http", "1-65535"),
        ({"http": "http://h:99999/", "interval": 10}, "Check.http", "1-65535"),
        ({"http": "http://h:\uff18\uff10/", "interval": 10}, "Check.http", "visible ASCII"),
        ({"http": f"http://{LONG_LABEL}.example/", "interval": 10}, "Check.http", "1-63"),
        ({"http": f"http://{'a.' * 130}b/", "interval": 10}, "Check.http", "1-253"),
        ({"http": "http://h/a b", "interval": 10}, "Check.http", "visible ASCII"),
        ({"http": "http://h/\r\nX: y", "interval": 10}, "Check.http", "visible ASCII"),
        ({"http": "ftp://h/", "interval": 10}, "Check.http", "http:// or https://"),
        ({"http": "http:///path", "interval": 10}, "Check.http", "http:// or https://"),
        ({"http": "http://[::1/", "interval": 10}, "Check.http", "IPv6 URL"),
        ({"http": "http://h/", "interval": 10, "header": {"X-A": ("é",)}}, "Check.header.X-A", ""),
        (
            {"http": "http://h/", "interval": 10, "header": {"X-A": ("a\r\nInjected: 1",)}},
            "Check.header.X-A",
            "no CR, LF",
        ),
        ({"http": "http://h/", "interval": 10, "header": {"X A": ("1",)}}, "Check.header", "name"),
        ({"http": "http://h/", "interval": 10, "method": "GE T"}, "Check.method", "method"),
        ({"http": "http://h/", "interval": 10, "timeout": math.nan}, "Check.timeout", "finite"),
        ({"http": "http://h/", "interval": math.inf}, "Check.interval", "finite"),
        ({"http": "http://h/", "interval": "1e999"}, "Check.interval", "finite"),
        ({"ttl": {"s": 1}}, "Check.ttl", "object"),
        ({"tcp": "h:1:", "interval": 10}, "Check.tcp", "port"),
        ({"tcp": "h", "interval": 10}, "Check.tcp", "host:port"),
        ({"tcp": "::1:80", "interval": 10}, "Check.tcp", "brackets"),
        ({"tcp": f"{LONG_LABEL}:80", "interval": 10}, "Check.tcp", "1-63"),
        ({"tcp": "h:٨٠", "interval": 10}, "Check.tcp", "1-65535"),
        (
            {"ttl": 10, "success_before_passing": True},
            "Check.success_before_passing",
            "boolean",
        ),
        ({"ttl": 10, "failures_before_critical": -1}, "Check.failures_before_critical", "negative"),
        ({"ttl": 10, "notes": "a\x00b"}, "Check.notes", "control"),
    ],
)
def test_checks_the_prober_cannot_run_are_refused_naming_the_field(spec, field, words) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(**spec)
    assert caught.value.field == field, caught.value.message
    assert words in caught.value.message


def test_exec_arguments_with_nul_are_refused_for_the_agent() -> None:
    with pytest.raises(InvalidInput) as caught:
        build_check(
            {"args": ["/bin/true", "a\x00b"], "interval": 10},
            field="checks[0]",
            check_id="c",
            node="",
            service="web",
            instance="web",
            runner="agent",
            rules=RULES,
        )
    assert caught.value.field == "checks[0].args[1]"


def test_good_checks_are_taken() -> None:
    assert check(http="http://127.0.0.1:8080/health", interval=10).http.endswith("/health")
    assert check(http="https://[::1]:8443/", interval=10, method="head").method == "HEAD"
    assert check(tcp="[::1]:80", interval=10).tcp == "[::1]:80"
    assert check(http="http://my_host.example./", interval=10).type == "http"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Name": "web", "Namespace": "a\x00b"}, "Namespace"),
        ({"Name": "web", "Namespace": "a/b"}, "Namespace"),
        ({"Name": "web", "Namespace": "prod\n"}, "Namespace"),
        ({"Name": "web", "Kind": "evil\n"}, "Kind"),
        ({"Name": "web", "TaggedAddresses": {"lan": {"Address": "a b", "Port": 1}}}, ""),
        ({"Name": "web", "TaggedAddresses": {"lan": {"Port": 1.5}}}, "TaggedAddresses.lan.Port"),
        ({"Name": "web", "TaggedAddresses": {"lan": [1]}}, "TaggedAddresses.lan"),
        ({"Name": "web\n"}, "Name"),
        ({"Name": "web", "ID": "web-1\n"}, "ID"),
        ({"Name": "web", "Check": {"TTL": "10s", "Timeout": {"s": 1}}}, "Check.Timeout"),
    ],
)
def test_consul_identifiers_are_checked_against_their_charset(body, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        registration_from_consul(body, node="n1", node_address="127.0.0.1", rules=RULES)
    if field:
        assert caught.value.field == field, caught.value.message
    else:
        assert caught.value.field.startswith("TaggedAddresses.lan")


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (service_name, "web\n"),
        (instance_id, "web-1\n"),
        (node_name, "node\n"),
        (namespace, "prod\n"),
        (source, "k8s/prod\n"),
        (source, "a/b/c"),
        (source, "k8s\x00"),
        (source, "/api"),
        (kind, "connect-proxy\n"),
        (identity, "spiffe://td/ns/default/svc/web\n"),
        (address, "10.0.0.1\n"),
        (address, "host.example\n"),
    ],
)
def test_a_trailing_newline_or_stray_separator_is_not_a_valid_identifier(rule, value) -> None:
    with pytest.raises(InvalidInput) as caught:
        rule(value, "f")
    assert caught.value.field == "f"


def test_meta_keys_are_matched_whole() -> None:
    with pytest.raises(InvalidInput):
        meta({"team\n": "x"}, "Meta")


def test_identifiers_in_use_are_taken() -> None:
    assert source("k8s/prod-eu1", "s") == "k8s/prod-eu1"
    assert source("agent", "s") == "agent"
    assert kind("connect-proxy", "k") == "connect-proxy"
    assert identity("spiffe://weft.local/ns/default/svc/web", "i")


# -- probes never raise ------------------------------------------------------------------------


def stored(**fields) -> Check:
    """A check as an older version might have stored it, with none of today's checks."""
    return Check(id="c", node="n", service="web", instance="web-1", runner="server", **fields)


@pytest.mark.parametrize(
    "bad",
    [
        stored(type="http", http="http://h:1:/"),
        stored(type="http", http="http://127.0.0.1:9/", header={"X-A": ("é",)}),
        stored(type="http", http="http://127.0.0.1:9/", header={"X-A": ("a\r\nB: c",)}),
        stored(type="http", http="http://127.0.0.1:9/", timeout=math.nan),
        stored(type="http", http=f"http://{LONG_LABEL}.example/"),
        stored(type="http", http="http://h/", method="GE T"),
        stored(type="tcp", tcp=f"{LONG_LABEL}.example:80"),
        stored(type="tcp", tcp="h:1:"),
        stored(type="tcp", tcp="127.0.0.1:9", timeout=-1.0),
        stored(type="exec", args=("/bin/true\x00",)),
        stored(type="exec", args=()),
    ],
    ids=lambda c: f"{c.type}:{(c.http or c.tcp or repr(c.args))[:30]}:{c.timeout}",
)
async def test_a_malformed_stored_check_is_a_critical_result_with_the_reason(bad) -> None:
    async with httpx.AsyncClient() as http:
        status, output = await probe(bad, http)
    assert status is Status.CRITICAL
    assert output


async def test_probe_functions_themselves_catch_what_the_client_raises() -> None:
    async with httpx.AsyncClient() as http:
        status, output = await probe_http(http, "http://h:1:/")
    assert status is Status.CRITICAL and "could not run" in output
    status, output = await probe_tcp("h:x")
    assert status is Status.CRITICAL and "could not run" in output
    status, output = await probe_exec(["a\x00b"])
    assert status is Status.CRITICAL


# -- URL paths are decoded once ----------------------------------------------------------------


async def _ok(request):  # pragma: no cover - never called, only routed to
    raise AssertionError


def test_router_does_not_decode_parameters_a_second_time() -> None:
    router = Router()
    router.add("GET", "/v1/kv/{key:path}", _ok)
    router.add("GET", "/v1/catalog/service/{name}", _ok)
    # The server decoded "%2525" to "%25" already: the key is the three characters "%25".
    assert router.match("GET", "/v1/kv/a%25b")[1] == {"key": "a%25b"}
    assert router.match("GET", "/v1/kv/dir/x%2Fy")[1] == {"key": "dir/x%2Fy"}
    # A decoded newline is part of the key, not a place where matching may stop.
    assert router.match("GET", "/v1/kv/a\n")[1] == {"key": "a\n"}
    assert router.match("GET", "/v1/catalog/service/web\n")[1] == {"name": "web\n"}


@given(
    st.one_of(
        st.text(max_size=60).map(lambda t: "http://" + t),
        st.from_regex(r"https?://[a-z0-9.:\[\]_-]{0,20}(/[ -~]{0,10})?", fullmatch=True),
    )
)
def test_any_url_the_validator_takes_the_http_client_can_request(url) -> None:
    try:
        _targets.http_url(url, "http")
    except InvalidInput as exc:
        assert exc.field == "http"
    else:
        httpx.Request("GET", url)  # raises if the prober could not send it
