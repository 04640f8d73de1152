"""The documentation points at things that exist: every relative Markdown link (and <img src>)
and every repository path named in backticks in README.md and docs/**/*.md.

A backticked text counts as a repository path when it has no spaces, placeholders or globs and
its first component is a top-level entry of the repository as git tracks it (`services/…`,
`config.yml`, `Makefile`); a `::test` suffix and a trailing `/` are dropped. Absolute paths
(`/etc/…`), URLs, Redis keys, API routes and git-ignored places (`var/`, `.venv/`) are not
repository paths and are not checked. Files under bench/results/ are benchmark output that may
be git-ignored: they may be missing as long as the generators that write them exist.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
GENERATED = "bench/results/"
GENERATORS = ("bench/run.py", "bench/soak.py", "bench/fraud.py")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img[^>]*\bsrc=\"([^\"]+)\"")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
NOT_A_PATH = re.compile(r"[\s<>{}*?…$|,;=()\[\]'\"]|^-|\.\.\.")


def tracked_top_level() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.split("/", 1)[0] for name in files}


TOP_LEVEL = tracked_top_level()


def without_code_blocks(text: str) -> str:
    """The prose: fenced blocks hold shell sessions and configs, not references."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def relative_links(doc: Path) -> list[str]:
    targets = []
    for match in LINK.finditer(without_code_blocks(doc.read_text(encoding="utf-8"))):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # http:, mailto:, an anchor
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def repository_paths(doc: Path) -> list[str]:
    paths = []
    for span in CODE_SPAN.findall(without_code_blocks(doc.read_text(encoding="utf-8"))):
        path = span.split("::", 1)[0].rstrip("/")
        if NOT_A_PATH.search(path) or path.startswith("/"):
            continue
        if path.split("/", 1)[0] in TOP_LEVEL and ("/" in path or path in TOP_LEVEL):
            paths.append(path)
    return paths


def allowed_missing(path: str) -> bool:
    in_generated = path == GENERATED.rstrip("/") or path.startswith(GENERATED)
    return in_generated and all((ROOT / g).is_file() for g in GENERATORS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_relative_links_exist(doc):
    missing = [t for t in relative_links(doc) if not (doc.parent / t).exists()]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_repository_paths_in_backticks_exist(doc):
    missing = [
        p for p in repository_paths(doc) if not (ROOT / p).exists() and not allowed_missing(p)
    ]
    assert missing == []


def test_the_rules_find_what_they_should():
    # The patterns above must keep finding references (an always-empty list passes trivially).
    readme = ROOT / "README.md"
    assert "docs/ARCHITECTURE.md" in relative_links(readme)
    assert "LICENSE" in relative_links(readme)
    operations = repository_paths(ROOT / "docs" / "OPERATIONS.md")
    assert {"sql/schema.sql", "devstack/galera.py", "tests/galera"} <= set(operations)
    assert not {"var/redis", "/etc/redis/redis.conf", "redis.url"} & set(operations)
