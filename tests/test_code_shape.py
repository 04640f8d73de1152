"""The code's shape (issue 14): no Python module over 400 lines.

A module that long does several things; split it by what they are, so each can be read whole.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
PACKAGES = ("services", "handlers", "sandbox", "devstack", "bench", "tools", "tests")


def python_modules() -> list[Path]:
    modules = [ROOT / "server.py"]
    for package in PACKAGES:
        modules += sorted((ROOT / package).rglob("*.py"))
    return modules


def test_the_modules_are_found():
    modules = python_modules()
    assert ROOT / "server.py" in modules and Path(__file__) in modules
    assert len(modules) > 50


def test_no_module_is_over_400_lines():
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in python_modules()
    }
    too_long = {name: lines for name, lines in lengths.items() if lines > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: split them by what they do"
