"""`--workers auto` and `proxy_workers = "auto"`: one process per core the proxy may run on."""

from __future__ import annotations

import os

import pytest

from agent import AgentConfig
from weft._settings import MAX_WORKERS, SettingsError, load_settings
from weft.cli.proxy import ProxySettings

CORES = len(os.sched_getaffinity(0))


def proxy(**flags: object) -> ProxySettings:
    return load_settings(
        ProxySettings,
        env_prefix="WEFT_PROXY_",
        flags={"snapshot": "/tmp/s.json", **flags},
        environ={},
    )


def test_auto_is_one_worker_per_usable_core() -> None:
    assert proxy(workers="auto").workers == CORES
    assert proxy(workers="AUTO ").workers == CORES
    assert proxy(workers="3").workers == 3


def test_the_environment_takes_auto_too() -> None:
    settings = load_settings(
        ProxySettings,
        env_prefix="WEFT_PROXY_",
        flags={"snapshot": "/tmp/s.json"},
        environ={"WEFT_PROXY_WORKERS": "auto"},
    )
    assert settings.workers == CORES


@pytest.mark.parametrize("bad", ["two", "1.5", "-1", "", "nan"])
def test_anything_else_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(SettingsError) as err:
        proxy(workers=bad)
    assert "workers" in str(err.value)


def test_zero_workers_is_refused() -> None:
    with pytest.raises(SettingsError, match="workers"):
        proxy(workers="0")


def test_auto_on_a_host_with_more_cores_than_the_limit_takes_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No host here has 300 cores: the count the kernel reports is the one thing replaced.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(300)))
    assert proxy(workers="auto").workers == MAX_WORKERS
    config = load_settings(
        AgentConfig, env_prefix="WEFT_AGENT_", flags={"proxy_workers": "auto"}, environ={}
    )
    assert config.proxy_workers == MAX_WORKERS


def test_an_explicit_count_above_the_limit_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match=f"workers.*between 1 and {MAX_WORKERS}"):
        proxy(workers=str(MAX_WORKERS + 1))
    with pytest.raises(
        SettingsError, match=f"proxy_workers.*257 is not between 1 and {MAX_WORKERS}"
    ):
        load_settings(
            AgentConfig,
            env_prefix="WEFT_AGENT_",
            flags={"proxy_workers": str(MAX_WORKERS + 1)},
            environ={},
        )


def test_the_agent_passes_auto_on_as_a_count(tmp_path: os.PathLike[str]) -> None:
    config = load_settings(
        AgentConfig, env_prefix="WEFT_AGENT_", flags={"proxy_workers": "auto"}, environ={}
    )
    assert config.proxy_workers == CORES
    with pytest.raises(Exception, match="proxy_workers"):
        load_settings(
            AgentConfig, env_prefix="WEFT_AGENT_", flags={"proxy_workers": "many"}, environ={}
        )


def test_io_waits_is_trio_by_default_and_refuses_anything_but_reactor_or_trio() -> None:
    assert proxy().io_waits == "trio"
    assert proxy(io_waits="reactor").io_waits == "reactor"
    with pytest.raises(SettingsError, match="io_waits"):
        proxy(io_waits="epoll")
