"""The HTTP server's pure limits: read-ahead and client clocks (Inbox), connection caps
(Admission), fitting the cap under RLIMIT_NOFILE, the view cache's budget; and, in process,
that a handler's bug answers 500 for that request only."""

from __future__ import annotations

import math

import pytest
import trio

from registry._view_cache import ViewCache
from registry.web import HTTPServer, Limits, ParsedRequest, ProtocolError, Request, Response
from registry.web._admission import FD_RESERVE, Admission, fit_under_fd_limit
from registry.web._inbox import Inbox
from registry.web._parser import RequestParser

GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"


def inbox(now: float = 0.0, **kw: float) -> Inbox:
    settings = {"head_timeout": 10.0, "body_timeout": 30.0, "idle_timeout": 75.0} | kw
    return Inbox(
        RequestParser(),
        now=now,
        read_ahead=int(kw.get("read_ahead", 100)),
        head_timeout=settings["head_timeout"],
        body_timeout=settings["body_timeout"],
        idle_timeout=settings["idle_timeout"],
    )


def test_pipelined_requests_are_handed_out_one_at_a_time_and_the_rest_held() -> None:
    box = inbox()
    box.receive(GET, 0)
    first = box.take()
    assert isinstance(first, ParsedRequest)
    box.receive(GET * 3, 1)  # while the first is answered: held, not parsed
    assert box.take() is None
    box.answered(2)
    for second in (3, 4, 5):
        assert isinstance(box.take(), ParsedRequest)
        assert box.take() is None  # the next waits until this one is answered
        box.answered(second)
    assert box.take() is None
    assert box.idle


def test_reading_stops_once_read_ahead_is_held_and_resumes_when_answered() -> None:
    box = inbox(read_ahead=100)
    box.receive(GET, 0)
    box.take()
    box.receive(b"PUT /b HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 80, 1)
    assert not box.wants_bytes  # 120 bytes held: stop reading, TCP pushes back
    box.answered(2)
    assert box.wants_bytes  # the held bytes went to the parser: a body in progress
    assert box.waiting_for == "body"


def test_head_deadline_runs_from_the_first_byte_and_is_not_restarted_by_later_bytes() -> None:
    box = inbox(head_timeout=10)
    assert box.deadline() == 75  # idle
    box.receive(b"G", 5)
    assert box.deadline() == 15
    for second, byte in enumerate(b"ET / HTTP/1.1\r\nX: y", start=6):
        box.receive(bytes([byte]), second)
        assert box.deadline() == 15  # a byte at a time does not buy time
    assert box.waiting_for == "head"


def test_body_deadline_runs_from_the_end_of_the_head() -> None:
    box = inbox(body_timeout=30)
    box.receive(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 3)
    assert box.waiting_for == "body"
    box.receive(b"ab", 20)
    assert box.deadline() == 33


def test_the_client_has_no_clock_while_the_server_answers() -> None:
    box = inbox(head_timeout=10, idle_timeout=75)
    box.receive(GET + b"GET /b HTT", 0)  # a request and half the next
    box.take()
    assert box.deadline() == math.inf  # a blocking query may park for minutes
    box.answered(600)
    assert box.deadline() == 610  # the half head's clock starts when the server turns to it


def test_a_good_request_before_a_bad_one_is_answered_then_the_error() -> None:
    box = inbox()
    box.receive(GET + b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0)
    assert isinstance(box.take(), ParsedRequest)
    box.answered(1)
    error = box.take()
    assert isinstance(error, ProtocolError) and error.status == 400
    assert not box.wants_bytes


def test_admission_caps_the_total_and_each_address() -> None:
    gate = Admission(max_connections=3, max_per_ip=2)
    assert gate.admit("a") is None
    assert gate.admit("a") is None
    assert "already has 2 connections" in (gate.admit("a") or "")
    assert gate.admit("b") is None
    assert "limit of 3 connections" in (gate.admit("c") or "")
    gate.release("a")
    assert gate.admit("c") is None
    assert (gate.open, gate.held_by("a"), gate.held_by("c")) == (3, 1, 1)


def test_admission_per_address_cap_zero_means_none() -> None:
    gate = Admission(max_connections=5, max_per_ip=0)
    assert all(gate.admit("lb") is None for _ in range(5))


@pytest.mark.parametrize(
    ("cap", "soft", "hard", "expected"),
    [
        (1000, 65536, 65536, (1000, 65536, False)),  # fits
        (1000, 1024, 65536, (1000, 1000 + FD_RESERVE, False)),  # raise the soft limit
        (1000, 1024, -1, (1000, 1000 + FD_RESERVE, False)),  # hard limit unlimited
        (8192, 1024, 1024, (1024 - FD_RESERVE, 1024, True)),  # lowered to fit, and said
        (8192, 100, 100, (1, 100, True)),  # never below one
    ],
)
def test_the_connection_cap_fits_under_the_open_file_limit(cap, soft, hard, expected) -> None:
    fit = fit_under_fd_limit(cap, soft, hard)
    assert (fit.cap, fit.soft_limit, fit.lowered) == expected


def test_view_cache_stays_within_its_byte_budget_least_recent_out_first() -> None:
    cache = ViewCache(max_bytes=1000)
    cache.put("a", 1, b"x" * 400, 1)
    cache.put("b", 1, b"x" * 400, 1)
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put("c", 1, b"x" * 400, 1)
    assert (cache.get("a", 1) is not None, cache.get("b", 1), cache.get("c", 1) is not None) == (
        True,
        None,
        True,
    )
    assert cache.size <= 1000
    cache.put("huge", 1, b"x" * 2000, 4)  # larger than the budget: not held
    assert cache.get("huge", 1) is None and cache.size <= 1000


def test_view_cache_answers_only_for_the_index_it_rendered() -> None:
    cache = ViewCache(max_bytes=1000)
    cache.put("a", 5, b"old", 1)
    assert cache.get("a", 6) is None
    cache.put("a", 6, b"new", 1)
    assert cache.get("a", 6) == b"new" and len(cache) == 1 and cache.size == 4


def test_view_cache_counts_entries_as_well_as_bytes() -> None:
    cache = ViewCache(max_bytes=10**6, max_entries=3)
    for key in "abcd":
        cache.put(key, 1, b"x", 1)
    assert len(cache) == 3 and cache.get("a", 1) is None


# -- in process: a handler's bug is that request's 500, nothing more ----------------------------


async def _exchange(port: int, raw: bytes, responses: int) -> list[bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(5):
            while data.count(b"HTTP/1.1 ") < responses or not data.endswith(b"}"):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


async def test_a_handler_bug_answers_500_for_that_request_only(nursery) -> None:
    async def app(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("a bug")
        if request.path == "/group":
            raise ExceptionGroup("bugs", [ValueError("one"), KeyError("two")])
        return Response.json({"ok": True})

    server = HTTPServer(app, limits=Limits())
    _, port = await nursery.start(server.serve, "127.0.0.1", 0)
    raw = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for path in ("/boom", "/group", "/ok")
    )
    answers = await _exchange(port, raw, 3)
    assert [a.split(b" ")[1] for a in answers] == [b"500", b"500", b"200"]  # one connection
    assert answers[2].endswith(b'{"ok":true}')
    server.shutdown()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"head_timeout": math.nan}, "head_timeout"),
        ({"body_timeout": 0.0}, "body_timeout"),
        ({"idle_timeout": math.inf}, "idle_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections_per_ip": -1}, "max_connections_per_ip"),
        ({"read_ahead_bytes": 10}, "read_ahead_bytes"),
        ({"view_cache_bytes": -1}, "view_cache_bytes"),
    ],
)
def test_bad_connection_settings_are_refused_naming_the_field(settings, field) -> None:
    from agent._config import AgentConfig
    from agent._errors import ConfigError as AgentConfigError
    from registry._config import ConfigError, ServerConfig

    with pytest.raises(ConfigError) as info:
        ServerConfig(**settings).validate()
    assert info.value.field == field
    if field != "view_cache_bytes":
        with pytest.raises(AgentConfigError) as agent_info:
            AgentConfig(**{f"api_{k}": v for k, v in settings.items()}).validate()
        assert agent_info.value.field == f"api_{field}"
