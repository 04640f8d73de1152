"""devstack.processes.start_listening: the one way the stack, tests and benchmarks start a
child process and wait for its port."""

from __future__ import annotations

import contextlib
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from devstack.processes import free_port, start_listening


def test_returns_once_the_child_listens_and_its_output_goes_to_the_log(tmp_path):
    port = free_port()
    log = tmp_path / "child.log"
    process = start_listening(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        port,
        log,
        timeout=20,
        cwd=tmp_path,
        name="http.server",
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(10)
    assert "GET / HTTP/1.1" in log.read_text()


def test_a_child_that_exits_first_is_reported_with_its_log(tmp_path):
    script = "import sys; print('config error: no such key', flush=True); sys.exit(2)"
    with pytest.raises(RuntimeError) as failure:
        start_listening(
            [sys.executable, "-c", script], free_port(), tmp_path / "child.log", name="child"
        )
    assert "child did not start" in str(failure.value)
    assert "exited with 2" in str(failure.value)
    assert "config error: no such key" in str(failure.value)


def test_a_child_that_never_listens_is_stopped_not_left_behind():
    token = f"never-listens-{uuid.uuid4().hex}"
    script = f"import time; time.sleep(120)  # {token}"
    with pytest.raises(RuntimeError, match="nothing listening"):
        start_listening([sys.executable, "-c", script], free_port(), None, timeout=1)
    assert not any(token in cmdline for cmdline in command_lines()), "child left running"


def command_lines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes().decode(errors="replace"))
    return found
