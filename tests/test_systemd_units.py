"""docs/deploy/systemd/: the unit passes `systemd-analyze verify` without a warning, keeps its
hardening (`systemd-analyze security` exposure at most 2.0), and stops as server.py drains."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "systemd" / "smsreg.service"
INSTALL_DIR = "/opt/smsreg"
# systemd-analyze security's exposure, in tenths (its --threshold is an integer).
MAX_EXPOSURE = 20


def installed_copy(tmp_path: Path) -> Path:
    """The unit with /opt/smsreg replaced by a folder whose .venv/bin/python exists: verify
    checks that ExecStart's binary is there and executable."""
    venv_bin = tmp_path / "smsreg" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    os.symlink(sys.executable, venv_bin / "python")
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALL_DIR in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALL_DIR, str(tmp_path / "smsreg")), encoding="utf-8")
    return copy


def systemd_analyze(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_unit_verifies_without_a_warning(tmp_path):
    result = systemd_analyze("verify", installed_copy(tmp_path))
    # verify exits 0 on an unknown key or a bad value ("ignoring"): any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_keeps_its_hardening(tmp_path):
    result = systemd_analyze(
        "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", installed_copy(tmp_path)
    )
    assert result.returncode == 0, result.stdout[-600:] + result.stderr


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser["Service"]


def test_stop_is_the_servers_drain():
    service = service_section()
    # SIGTERM to the parent only (it forwards to its workers, the CAPTCHA render pool is left
    # to its worker), and time for the drain plus closing the connections (2 x 10 s).
    assert (service["KillMode"], service["KillSignal"]) == ("mixed", "SIGTERM")
    assert int(service["TimeoutStopSec"]) > 2 * 10
    assert "ExecReload" not in service  # the config is read once: restart, not reload
    assert service["User"] == "smsreg" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
