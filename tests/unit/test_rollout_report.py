"""`weft rollout`'s reporting, from ansible-runner events (shaped as runner emits them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from weft.cli._output import CommandError
from weft.cli.rollout import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    Report,
    parse_extra_vars,
    result_message,
    table,
)


def ev(kind: str, host: str | None = None, task: str = "t", role: str | None = None, **data):
    event_data = {"task": task, **data}
    if host:
        event_data["host"] = host
    if role:
        event_data["role"] = role
    return {"event": kind, "event_data": event_data}


def stats(**columns):
    return {"event": "playbook_on_stats", "event_data": columns}


def test_changes_and_failures_are_shown_as_they_happen_ok_only_when_verbose() -> None:
    report = Report()
    assert report.event({"event": "playbook_on_play_start", "event_data": {"name": "Roll"}}) == [
        "PLAY Roll"
    ]
    assert report.event(ev("runner_on_ok", "alpha", "Read", res={"changed": False})) == []
    [line] = report.event(
        ev("runner_on_ok", "alpha", "Set maintenance on", "weft_agent",
           res={"changed": True}, duration=0.42)
    )  # fmt: skip
    assert line.split() == ["alpha", "changed", "weft_agent", ":", "Set", "maintenance", "on",
                            "0.4s"]  # fmt: skip
    assert Report(verbose=True).event(ev("runner_on_ok", "beta", "Read", res={})) != []


def test_a_failure_names_the_host_the_task_and_the_check() -> None:
    report = Report()
    message = "alpha is not healthy after 20s: check service:web of web is critical (HTTP 500)"
    [line] = report.event(
        ev("runner_on_failed", "alpha", "Fail unless the node is ready and healthy", "weft_agent",
           res={"msg": message, "changed": False})
    )  # fmt: skip
    assert "FAILED" in line and "alpha" in line and "service:web" in line
    report.event(stats(ok={"alpha": 40}, failures={"alpha": 1}, processed={"alpha": 1}))
    [failure] = report.failures
    assert failure.line() == (
        "alpha failed at 'weft_agent : Fail unless the node is ready and healthy': " + message
    )
    assert report.exit_status(runner_rc=2) == EXIT_FAILED


def test_ignored_failures_do_not_count() -> None:
    report = Report()
    report.event(ev("runner_on_failed", "alpha", "probe", res={"msg": "no"}, ignore_errors=True))
    report.event(stats(ok={"alpha": 3}, ignored={"alpha": 1}))
    assert report.failures == [] and report.exit_status(runner_rc=0) == 0


def test_unreachable_hosts_exit_4() -> None:
    report = Report()
    report.event(ev("runner_on_unreachable", "beta", "Gathering Facts",
                    res={"msg": "Failed to connect to the host via ssh"}))  # fmt: skip
    report.event(stats(dark={"beta": 1}))
    assert report.exit_status(runner_rc=4) == EXIT_UNREACHABLE
    assert report.failures[0].line().startswith("beta unreachable at 'Gathering Facts'")


def test_the_table_counts_per_host_and_marks_hosts_never_reached() -> None:
    report = Report()
    report.event(ev("runner_on_failed", "alpha", "Fail unless healthy", "weft_agent",
                    res={"msg": "checks failing"}))  # fmt: skip
    report.event(stats(ok={"alpha": 40}, changed={"alpha": 5}, failures={"alpha": 1},
                       skipped={"alpha": 3}))  # fmt: skip
    rows = report.rows(["alpha", "beta"])
    assert rows[0] == (
        "alpha", 40, 5, 1, 0, 3, "failed: weft_agent : Fail unless healthy"
    )  # fmt: skip
    assert rows[1] == ("beta", "-", "-", "-", "-", "-", "not reached")
    lines = table(rows)
    assert lines[0].split() == ["HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED",
                                "RESULT"]  # fmt: skip
    assert lines[2].split()[-2:] == ["not", "reached"]
    summary = report.summary(["alpha", "beta"])
    assert summary["hosts"]["alpha"]["changed"] == 5
    assert summary["hosts"]["beta"]["result"] == "not reached"
    assert summary["failures"][0]["host"] == "alpha"


def test_a_clean_second_run_has_zero_changes() -> None:
    report = Report()
    report.event(stats(ok={"alpha": 57, "beta": 39}, changed={}, skipped={"alpha": 12}))
    assert [row[2] for row in report.rows()] == [0, 0]
    assert report.exit_status(runner_rc=0) == 0


def test_retries_show_progress() -> None:
    [line] = Report().event(
        ev("runner_retry", "alpha", "Wait for every check on the node to pass", "weft_agent",
           res={"attempts": 3, "retries": 61})
    )  # fmt: skip
    assert line.endswith("(attempt 3 of 61)") and "waiting" in line


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ({"msg": "  two\n lines "}, "two lines"),
        ({"msg": "", "stderr": "boom", "rc": 1}, "boom"),
        ({"rc": 3}, "exit status 3"),
        ({"results": [{"failed": False}, {"failed": True, "msg": "item 2 broke"}]}, "item 2 broke"),
        ({}, "failed"),
    ],
)
def test_result_message_picks_the_telling_part(res, message) -> None:
    assert result_message(res) == message


def test_extra_vars_from_pairs_files_and_json(tmp_path: Path) -> None:
    file = tmp_path / "vars.yml"
    file.write_text("weft_rollout_serial: 2\nweft_agent_services: [{name: web, port: 80}]\n")
    got = parse_extra_vars(
        ["weft_common_version=0.2.0", f"@{file}", '{"weft_rollout_force": true}', "a=b=c"]
    )
    assert got == {
        "weft_common_version": "0.2.0",
        "weft_rollout_serial": 2,
        "weft_agent_services": [{"name": "web", "port": 80}],
        "weft_rollout_force": True,
        "a": "b=c",
    }


@pytest.mark.parametrize("bad", ["novalue", "=x", "{not json", "@/nonexistent/vars.yml", "[1]"])
def test_bad_extra_vars_are_refused_with_a_clear_error(bad: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_extra_vars([bad])
    assert str(info.value).startswith("-e ")
    assert info.value.status in (64, 66)


def test_an_extra_vars_file_must_hold_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "list.yml"
    file.write_text("- a\n- b\n")
    with pytest.raises(CommandError, match="must hold a mapping"):
        parse_extra_vars([f"@{file}"])
