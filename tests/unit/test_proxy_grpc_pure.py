"""The pure HTTP/2 and gRPC cores: grpc-timeout, grpc-status classification, Trailers-Only
answers, method labels, and the per-connection budgets against floods."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from proxy import _grpc
from proxy._h2_limits import Bucket, Budgets
from proxy._metrics import MAX_GRPC_METHODS, Metrics


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"5S", 5.0),
        (b"250m", 0.25),
        (b"100u", 1e-4),
        (b"99999999n", 0.099999999),
    ],
)
def test_grpc_timeout_units(value: bytes, seconds: float) -> None:
    assert _grpc.timeout_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [None, b"", b"5", b"S", b"5s", b"-5S", b"123456789S", b"1.5S", b"5 S", b"\xff"]
)
def test_malformed_grpc_timeouts_are_ignored(value: bytes | None) -> None:
    assert _grpc.timeout_seconds(value) is None


def test_a_200_with_grpc_status_14_is_a_failure_and_caller_errors_are_not() -> None:
    assert _grpc.status_of([(b":status", b"200"), (b"grpc-status", b"14")]) == 14
    assert _grpc.is_failure(14)
    assert _grpc.is_failure(None)  # no status on a gRPC response: a broken call
    assert not _grpc.is_failure(0)
    assert not _grpc.is_failure(5)  # NOT_FOUND: an answer
    assert _grpc.status_of([(b"grpc-status", b"x1")]) is None


def test_trailers_only_answer_for_the_proxys_own_failures() -> None:
    headers = dict(_grpc.trailers_only(_grpc.from_http(503), "no endpoint:\n100%"))
    assert headers[b":status"] == b"200"
    assert headers[b"content-type"] == b"application/grpc"
    assert headers[b"grpc-status"] == b"14"
    message = headers[b"grpc-message"]
    assert b"\n" not in message and b"%" in message  # percent-encoded
    assert unquote(message.decode()) == "no endpoint:\n100%"
    assert _grpc.from_http(504) == _grpc.DEADLINE_EXCEEDED
    assert _grpc.from_http(403) == _grpc.PERMISSION_DENIED


def test_content_types_that_are_grpc() -> None:
    assert _grpc.is_grpc(b"application/grpc")
    assert _grpc.is_grpc(b"application/grpc+proto")
    assert _grpc.is_grpc(b"Application/GRPC;charset=x")
    assert not _grpc.is_grpc(b"application/grpc-web")
    assert not _grpc.is_grpc(b"application/json")
    assert not _grpc.is_grpc(None)


def test_method_labels_are_bounded() -> None:
    assert _grpc.method_label(b"/pkg.Svc/Call") == "/pkg.Svc/Call"
    assert _grpc.method_label(b"/a/b/c") == "other"
    assert _grpc.method_label(b"/" + b"x" * 300 + b"/y") == "other"
    metrics = Metrics()
    labels = {
        metrics.grpc_method("outbound", "echo", f"/s/m{i}") for i in range(MAX_GRPC_METHODS + 50)
    }
    assert len(labels) == MAX_GRPC_METHODS + 1  # the first 200, then `other`
    assert "other" in labels
    assert metrics.grpc_method("outbound", "echo", "/s/m0") == "/s/m0"


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = Bucket(burst=3, rate=2)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)  # one token after half a second
    assert not bucket.take(0.5)


def test_rapid_resets_run_out_and_a_quiet_connection_recovers() -> None:
    budgets = Budgets(resets=(200, 100))
    assert all(budgets.reset(0.0) for _ in range(200))
    assert not budgets.reset(0.0)  # the 201st reset in the same instant
    assert budgets.reset(1.0)  # a second later, room again
    assert all(budgets.settings(0.0) for _ in range(20))
    assert not budgets.settings(0.0)
