"""`weft dev` (the README's first command) comes up, answers, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import httpx

from tests.harness import spawn, wait_until
from tests.harness._procs import weft_command


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().split(")")[-1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pid:
            found.add(int(entry))
            found |= _descendants(int(entry))
    return found


def test_weft_dev_runs_the_demo_and_ctrl_c_stops_everything(tmp_path) -> None:
    dev = spawn(
        [
            *weft_command(),
            "dev",
            "--dir",
            str(tmp_path / "dev"),
            "--port",
            "0",
            "--ready-file",
            str(tmp_path / "dev-ready.json"),
        ],
        log_path=tmp_path / "dev.out",
    )
    started = time.monotonic()
    try:
        text = wait_until(
            lambda: "Press Ctrl-C" in dev.log() and dev.log(),
            timeout=60,
            what="the demo to come up",
        )
        assert time.monotonic() - started < 60
        url = re.search(r"export WEFT_ADDR=(http://\S+)", text).group(1)
        web = re.search(r"curl -s (http://\S+/)\n", text).group(1)
        ready = dev.wait_ready_file(tmp_path / "dev-ready.json", timeout=10)
        assert (ready["url"], ready["web"], ready["pid"]) == (url, web, dev.pid)
        services = httpx.get(url + "/v1/catalog/services").json()
        assert {"web", "api", "prices"} <= set(services)
        for name in ("web", "api", "prices"):
            assert (
                len(httpx.get(f"{url}/v1/health/service/{name}", params={"passing": ""}).json())
                == 1
            )
        # A request crosses the whole chain, sidecar to sidecar.
        chain = httpx.get(web).json()
        assert chain["service"] == "web" and chain["upstream"]["service"] == "api"
        assert chain["upstream"]["upstream"]["service"] == "prices"
        # the mesh denies by default; the demo's two calls are allowed by intentions
        intentions = httpx.get(url + "/v1/intentions").json()
        assert intentions["default"] == "deny"
        assert sorted(
            (i["SourceName"], i["DestinationName"], i["Action"]) for i in intentions["intentions"]
        ) == [("api", "prices", "allow"), ("web", "api", "allow")]
        assert not httpx.get(
            url + "/v1/connect/intentions/check", params={"source": "web", "destination": "prices"}
        ).json()["Allowed"]
        # The load generator's traffic flows with no failure.
        wait_until(
            lambda: '"failed": 0' in dev.log() and "traffic {" in dev.log(),
            timeout=30,
            what="a traffic report",
        )
        assert '"failed": 0' in dev.log().split("traffic ")[-1]
        children = _descendants(dev.pid)
        assert len(children) >= 2  # etcd and the server at least
        dev.popen.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
        dev.popen.wait(timeout=30)
        assert dev.popen.returncode == 0
        assert "nothing left running" in dev.log()
        wait_until(
            lambda: not any(_alive(pid) for pid in children),
            timeout=10,
            what="every demo process to exit",
        )
        assert json.loads((tmp_path / "dev" / "server.json").read_text())["pid"] in children
    finally:
        dev.stop()
