"""The processes a benchmark run needs, and CPU accounting for them (Linux /proc)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
VENV_BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """pid and every process below it (gunicorn's workers, a server's children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.port:
            try:
                wait_for_port(self.port, timeout, self.process)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{self.name} did not start: {self.tail()}") from exc
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Sandbox(Proc):
    """The Ronglian sandbox (rate limits off, access log off) with its control API."""

    @classmethod
    def create(cls, workdir: Path) -> Sandbox:
        port = free_port()
        config = workdir / "sandbox.json"
        config.write_text(json.dumps({"rate_limits": False}))
        args = [
            sys.executable,
            "-m",
            "sandbox.ronglian",
            "--port",
            str(port),
            "--config-json",
            str(config),
            "--log-level",
            "WARNING",
        ]
        return cls("sandbox", args, workdir / "sandbox.log", port=port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, method: str, path: str, payload: object = None) -> object:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_latency(self, ms: int) -> None:
        self.control("PUT", "/faults", {"latency_ms": ms})

    def clear_inbox(self) -> None:
        self.control("DELETE", "/inbox")

    def inbox_size(self) -> int:
        return len(self.control("GET", "/inbox"))


def wait_quiet(port: int, path: str, budget: float = 40.0) -> float:
    """Wait until a trivial request answers within 0.5 s (backlogs drained); return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < budget:
        t0 = time.monotonic()
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3),
        ):
            pass
        # urlopen raises HTTPError (an OSError) for the 404 we ask for: that is an answer.
        if time.monotonic() - t0 < 0.5:
            return time.monotonic() - start
        time.sleep(0.3)
    return time.monotonic() - start
