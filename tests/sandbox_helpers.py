"""Run the provider sandboxes (sandbox.ronglian, sandbox.aliyun) as subprocesses.

Synchronous (no event loop), so it can be used from plain pytest fixtures and scripts. The
process is started and stopped by devstack.processes, like every other child of the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devstack.processes import free_port, start_listening, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent


class SandboxProcess:
    """A `python -m sandbox.<module>` child process plus sync helpers for its control API.

    Both sandboxes share the control API (/inbox, /faults, /healthz).
    """

    module = "ronglian"

    def __init__(
        self,
        port: int | None = None,
        config: dict | None = None,
        tmpdir: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.extra_args = extra_args or []
        self.port = port or free_port()
        self.config = config
        self._own_tmpdir = tmpdir is None
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix=f"{self.module}-sandbox-")
        # Output goes to a file, not a pipe: one log line per request would fill a pipe
        # during a benchmark and block the sandbox.
        self.log_path = os.path.join(self.tmpdir, f"{self.module}-sandbox-{self.port}.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Base URL to give a Ronglian client, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the sandbox and wait until it listens; raise with its output on failure."""
        if self._proc is not None:
            raise RuntimeError("sandbox already started")
        cmd = [sys.executable, "-m", f"sandbox.{self.module}", "--port", str(self.port)]
        cmd += self.extra_args
        if self.config is not None:
            config_path = os.path.join(self.tmpdir, f"{self.module}-sandbox-{self.port}.json")
            with open(config_path, "w", encoding="utf-8") as fh:
                json.dump(self.config, fh)
            cmd += ["--config-json", config_path]
        self._proc = start_listening(
            cmd, self.port, Path(self.log_path), timeout=timeout, cwd=REPO_ROOT, name=cmd[2]
        )

    def stop(self) -> None:
        """SIGTERM the sandbox, wait, SIGKILL as a fallback; safe to call twice."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout=5)
        if self._own_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self._own_tmpdir = False  # the directory is gone; a restart would need a new one

    def read_log(self) -> str:
        """Return the sandbox's log output so far (empty if unavailable)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control API -------------------------------------------------------------------------

    def inbox(self, mobile: str | None = None) -> list[dict]:
        """Messages the sandbox accepted, oldest first, optionally only those sent to `mobile`."""
        query = "?" + urllib.parse.urlencode({"mobile": mobile}) if mobile else ""
        return self._request("GET", "/inbox" + query)

    def clear(self) -> None:
        """Empty the inbox and reset the rate-limit counters."""
        self._request("DELETE", "/inbox")

    def set_fault(self, **fault: Any) -> None:
        """Replace the fault setting: latency_ms, mode, status_code, times (see sandbox docs)."""
        self._request("PUT", "/faults", fault)

    def reset_faults(self) -> None:
        """Back to normal behaviour (no latency, mode ok)."""
        self._request("DELETE", "/faults")

    def set_callback(self, url: str) -> None:
        """Where the sandbox pushes delivery receipts ("" = nowhere)."""
        self._request("PUT", "/callback", {"url": url})

    def faults(self) -> dict:
        """The current fault setting, including the remaining `times`."""
        return self._request("GET", "/faults")

    def _request(self, method: str, path: str, payload: Any = None, timeout: float = 10) -> Any:
        """Call the control API and decode its JSON answer; raise RuntimeError on HTTP errors."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:  # HTTPError holds the response socket; close it
                body = err.read().decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path} -> HTTP {err.code}: {body}") from None


class AliyunSandboxProcess(SandboxProcess):
    """`python -m sandbox.aliyun`: dysmsapi SendSms with the same control API."""

    module = "aliyun"
