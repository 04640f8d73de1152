"""PromQL helpers for the tests of docs/deploy/: promtool, and the series names an expression
selects compared with those services/metrics.py exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from services.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "docs" / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "smsreg-rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Series the server does not export but the rules may use: Prometheus's own scrape health and
# the blackbox exporter's probe of /readyz (docs/deploy/prometheus/README.md).
FOREIGN_SERIES = {"up", "probe_success"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def exported_series() -> set[str]:
    """Every series name /metrics can show (a counter smsreg_x is shown as smsreg_x_total)."""
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The series an expression selects: names that are not functions, keywords, label names
    or values, durations, or recording rules (those have colons)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\b(?:by|on|without|ignoring)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w:])([a-zA-Z_][\w:]*)(?![\w:]*\s*\()", expr)
    return {name for name in names if ":" not in name} - PROMQL_WORDS
