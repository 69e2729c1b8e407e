"""The downstream connection's life: keep-alive, timeouts, draining (table-driven, pure)."""

from __future__ import annotations

import pytest

from proxy._conn_state import ConnState, InvalidTransition, S


def test_keep_alive_cycles_between_idle_and_busy() -> None:
    c = ConnState()
    c.head_bytes()
    assert c.state == S.HEAD
    c.request(keep_alive=True)
    assert c.state == S.BUSY and c.keep_alive
    assert c.response_done() == S.IDLE
    c.request(keep_alive=True)
    assert c.requests == 2


def test_a_client_asking_to_close_gets_its_connection_closed_after_the_response() -> None:
    c = ConnState()
    c.request(keep_alive=False)
    assert not c.keep_alive and "asked" in c.close_reason
    assert c.response_done() == S.CLOSED


def test_draining_closes_idle_connections_at_once_and_busy_ones_after_the_response() -> None:
    idle = ConnState()
    idle.request(keep_alive=True)
    idle.response_done()
    assert idle.drain() is True and idle.state == S.CLOSED

    busy = ConnState()
    busy.request(keep_alive=True)
    assert busy.drain() is False and busy.state == S.BUSY and not busy.keep_alive
    assert busy.response_done() == S.CLOSED

    reading = ConnState()
    reading.head_bytes()
    assert reading.drain() is False
    reading.request(keep_alive=True)
    assert reading.response_done() == S.CLOSED


def test_upgraded_connections_become_tunnels() -> None:
    c = ConnState()
    c.request(keep_alive=True)
    c.upgraded()
    assert c.state == S.TUNNEL
    assert c.drain() is False
    c.eof()
    assert c.state == S.CLOSED


def test_errors_and_timeouts_close_from_any_state() -> None:
    for setup in (lambda c: None, lambda c: c.head_bytes(), lambda c: c.request(keep_alive=True)):
        c = ConnState()
        setup(c)
        c.timeout()
        assert c.state == S.CLOSED
    c = ConnState()
    c.error("bad chunk")
    assert c.state == S.CLOSED and c.close_reason == "bad chunk"


def test_impossible_events_are_bugs() -> None:
    c = ConnState()
    with pytest.raises(InvalidTransition):
        c.response_done()
    with pytest.raises(InvalidTransition):
        c.upgraded()
