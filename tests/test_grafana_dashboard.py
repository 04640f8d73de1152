"""docs/deploy/grafana/smsreg-dashboard.json: every PromQL expression parses (promtool, offline)
and selects only series the server exports or the shipped recording rules define."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.promql import (
    FOREIGN_SERIES,
    RULES,
    exported_series,
    metric_names,
    promtool,
)

DASHBOARD = (
    Path(__file__).resolve().parent.parent / "docs" / "deploy" / "grafana" / "smsreg-dashboard.json"
)


def expressions(node: object) -> Iterator[str]:
    """Every "expr" anywhere in the dashboard (panels, rows, nested panels)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def dashboard_expressions() -> list[str]:
    return list(expressions(json.loads(DASHBOARD.read_text(encoding="utf-8"))))


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_every_dashboard_expression_parses(tmp_path):
    exprs = dashboard_expressions()
    assert len(exprs) >= 15
    # promtool has no offline "parse this query": each expression becomes a recording rule,
    # and `promtool check rules` parses every rule's expression.
    rules = [{"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_dashboard_uses_only_exported_series_and_shipped_recording_rules():
    used = set().union(*map(metric_names, dashboard_expressions()))
    assert used - exported_series() - FOREIGN_SERIES == set()
    recorded = {
        name
        for expr in dashboard_expressions()
        for name in re.findall(r"\b[a-z_]+:[a-z_:0-9]+\b", expr)
    }
    assert recorded, "the dashboard should build on the recording rules"
    assert recorded - recorded_names() == set()
