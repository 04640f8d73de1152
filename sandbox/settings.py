"""Sandbox settings read from a JSON file: the loading both provider sandboxes share."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Self


class JsonSettings:
    """Mixin for a settings dataclass: from_dict/from_json_file, unknown keys refused."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build settings from a JSON-like dict; unknown keys are rejected to catch typos."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown sandbox config keys: {sorted(unknown)}")
        return cls(**cls.convert(dict(data)))

    @classmethod
    def convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Turn JSON values into the fields' types (a hook: by default, as they are)."""
        return values

    @classmethod
    def from_json_file(cls, path: str) -> Self:
        """Load settings from a JSON file (keys as in from_dict)."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))
