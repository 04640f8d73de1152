"""Loading: the YAML file, then SMSREG_<SECTION>_<KEY> overrides, each value coerced to its
setting's type, then validation (checks.py)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from services.config.checks import ENV_PREFIX, ConfigError, check_settings
from services.config.sections import Config

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Section = TypeVar("Section", bound="DataclassInstance")


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply SMSREG_<SECTION>_<KEY> overrides and validate."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    _apply_environment(raw, os.environ if environ is None else environ)
    config = _build(Config, raw, "")
    check_settings(config)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: what is wrong and where (its own text spans lines)."""
    problem = getattr(exc, "problem", None) or "cannot parse"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _apply_environment(raw: dict[str, object], environ: Mapping[str, str]) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in sections and not dataclasses.is_dataclass(sections[key].type):
            raw[key] = value
            continue
        # The longest section the name starts with: `host_app` holds an underscore itself.
        section = max((s for s in sections if key.startswith(s + "_")), key=len, default="")
        setting = key[len(section) + 1 :]
        if not section or not setting:
            raise ConfigError(f"unknown environment setting {name}")
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        # Environment values are strings; YAML parsing gives "8000" -> 8000, "true" -> True.
        target[setting] = _parse_env_value(value)


def _parse_env_value(value: str) -> object:
    if ":" in value:
        return value  # a time such as 22:00 (YAML 1.1 would read a base-60 number)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, str | int | float | bool) else value


def _build(cls: type[Section], raw: object, where: str) -> Section:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {where or '<root>'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config key {_join(where, unknown[0])!r}")
    values: dict[str, object] = {}
    for name, value in raw.items():
        kind = hints[name]
        dotted = _join(where, name)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, dotted)
        else:
            values[name] = _coerce(kind, value, dotted)
    return cls(**values)


def _coerce(kind: object, value: object, dotted: str) -> object:
    if typing.get_origin(kind) is tuple:
        # A list of names: a YAML list, or "a, b" from an environment variable.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"config key {dotted!r} must be a list of names, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    if isinstance(kind, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(kind, type)
        and isinstance(value, kind)
        and not (kind is int and isinstance(value, bool))
    ):
        return value
    expected = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"config key {dotted!r} must be {expected}, got {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
