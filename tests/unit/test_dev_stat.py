"""`weft dev`'s live stat table: `weft stat`'s rows, redrawn in place on a terminal and
appended as plain lines elsewhere."""

from __future__ import annotations

from weft._dev_stat import LiveTable, render

DOC = {
    "window_seconds": 10,
    "rows": [
        {
            "service": "api",
            "requests": 200,
            "rps": 19.5,
            "success_rate": 0.995,
            "latency_ms": {"p50": 5.2, "p95": 22.0, "p99": 48.0},
            "tcp_connections": 1,
            "proxies": 1,
            "instances": 1,
        }
    ],
}


def test_render_shows_stat_columns_and_the_load_generators_count() -> None:
    lines = render(DOC, '{"ok": 10, "failed": 0}')
    assert lines[1].split() == [
        "SERVICE",
        "MESHED",
        "SUCCESS",
        "RPS",
        "P50",
        "P95",
        "P99",
        "TCP_CONN",
    ]
    assert lines[2].split() == ["api", "1/1", "99.50%", "19.5", "5.2ms", "22ms", "48ms", "1"]
    assert lines[-1] == 'traffic {"ok": 10, "failed": 0}'
    assert "no traffic counted yet" in render({"rows": []}, "")[1]
    assert "did not answer" in render(None, "")[1]


def test_on_a_terminal_the_table_is_redrawn_in_place() -> None:
    out: list[str] = []
    table = LiveTable(out.append, tty=True)
    table.draw(["a", "b", "c"])
    table.draw(["a", "b"])
    assert out == ["a\nb\nc\n", "\x1b[3F\x1b[J", "a\nb\n"]  # up 3 lines, clear, redraw


def test_elsewhere_each_table_is_appended_without_escape_codes() -> None:
    out: list[str] = []
    table = LiveTable(out.append, tty=False)
    table.draw(["a"])
    table.draw(["b"])
    assert out == ["a\n", "b\n"]
