"""docs/ARCHITECTURE.md names every module of services/ and handlers/, and only modules that exist:
a newcomer who reads it finds every room of the house, and no room that was pulled down."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("services", "handlers")


def modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def named() -> set[str]:
    pattern = r"`((?:" + "|".join(PACKAGES) + r")/[A-Za-z0-9_/]+\.py)`"
    return set(re.findall(pattern, DOC.read_text(encoding="utf-8")))


def test_every_module_is_named_in_the_architecture_doc():
    missing = sorted(modules() - named())
    assert missing == [], f"docs/ARCHITECTURE.md does not name {missing}"


def test_every_module_the_architecture_doc_names_exists():
    gone = sorted(path for path in named() if not (ROOT / path).is_file())
    assert gone == [], f"docs/ARCHITECTURE.md names modules that do not exist: {gone}"
