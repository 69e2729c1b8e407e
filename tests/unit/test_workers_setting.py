"""`--workers auto` and `proxy_workers = "auto"`: one process per core the proxy may run on."""

from __future__ import annotations

import os

import pytest

from agent import AgentConfig
from weft._settings import SettingsError, load_settings
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
