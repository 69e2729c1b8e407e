"""Ready files and secrets are replaced whole: a reader never sees half of one."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy._server import write_ready_file as proxy_write_ready_file
from registry.lifecycle import write_atomic, write_ready_file

WRITERS: dict[str, Callable[[Path, dict[str, Any]], None]] = {
    "registry.lifecycle": write_ready_file,  # server, agent, adapter, weft dev
    "proxy": proxy_write_ready_file,  # the proxy's own copy (it imports only `ca`)
}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_a_reader_polling_a_ready_file_being_rewritten_never_parses_half_of_it(
    tmp_path: Path, writer: Callable[[Path, dict[str, Any]], None]
) -> None:
    path = tmp_path / "ready.json"
    # Large enough that a plain write would be seen in pieces.
    documents = [{"n": n, "pad": str(n) * 200_000} for n in range(2)]
    writer(path, documents[0])
    seen: set[int] = set()
    bad: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            text = path.read_text()
            try:
                seen.add(json.loads(text)["n"])
            except ValueError:
                bad.append(text[:80])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            writer(path, documents[i % 2])
    finally:
        done.set()
        reader.join()
    assert bad == []
    assert seen == {0, 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temporary file left


def test_a_secret_is_private_from_its_first_byte_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "token"
    old = os.umask(0)
    try:
        write_atomic(path, b"first", 0o600)
        write_atomic(path, b"second", 0o600)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]
