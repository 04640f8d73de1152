"""load_config as a function (no process started), and the one source of every default.

The dataclasses in services/config/sections.py are the source of every setting's default;
config.yml and docs/CONFIGURATION.md repeat them for the reader, and these tests keep all three
in step. Each setting's rules are declared there too, and applied by one loop.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from services.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "config.yml"
DOC = ROOT / "docs" / "CONFIGURATION.md"
DESCRIBED = "<described in words>"


def defaults() -> dict[str, dict[str, object]]:
    """{section: {key: default}} from the dataclasses (top-level keys such as mode under "")."""
    config = Config()
    out: dict[str, dict[str, object]] = {"": {}}
    for section in dataclasses.fields(Config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            out[section.name] = dataclasses.asdict(value)
        else:  # a YAML list is a tuple in the dataclass
            out[""][section.name] = list(value) if isinstance(value, tuple) else value
    return out


def documented() -> dict[str, dict[str, str]]:
    """{section: {key: default as written}} from the tables under docs' "### <section>"."""
    tables: dict[str, dict[str, str]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if heading := re.fullmatch(r"### (\w+)", line):
            section = heading.group(1)
        elif section and (row := re.match(r"\| `(\w+)` \| (?:`([^`]*)`|([^|]*)) \|", line)):
            # A secret's default is described in words ("sandbox token"), not repeated.
            written = row.group(2) if row.group(2) is not None else DESCRIBED
            tables.setdefault(section, {})[row.group(1)] = written
    return tables


def same_value(written: str, value: object) -> bool:
    """A default as the docs write it (a YAML scalar: 1.5, true, "1") is the dataclass's."""
    try:
        parsed = yaml.safe_load(written)
    except yaml.YAMLError:
        parsed = written
    return (parsed == value and type(parsed) is type(value)) or written == str(value)


def test_config_yml_repeats_every_default_and_nothing_else():
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    expected = defaults()
    top_level = expected.pop("")
    assert {k: shipped[k] for k in top_level} == top_level
    assert sorted(k for k in shipped if k not in top_level) == sorted(expected)
    for section, values in expected.items():
        assert shipped[section] == values, f"config.yml [{section}] differs from the defaults"


def test_configuration_doc_lists_every_setting_with_its_default():
    expected = defaults()
    expected.pop("")
    tables = documented()
    assert sorted(tables) == sorted(expected), "one '### <section>' table per config section"
    for section, values in expected.items():
        written = tables[section]
        assert sorted(written) == sorted(values), f"docs table [{section}] keys"
        for key, value in values.items():
            if written[key] != DESCRIBED:
                assert same_value(written[key], value), f"docs default of {section}.{key}"


def test_shipped_file_loads_to_the_defaults():
    assert load_config(SHIPPED, environ={}) == Config()


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("server:\n  prot: 8000\n", {}, "unknown config key 'server.prot'"),
        ("redis:\n  socket_timeout: soon\n", {}, "'redis.socket_timeout' must be float"),
        ("server:\n  port: true\n", {}, "'server.port' must be int"),
        ("server: 8000\n", {}, "config section 'server' must be a mapping"),
        ("- a\n- b\n", {}, "the top level must be a mapping"),
        ("server: [\n", {}, "is not valid YAML"),
        ("", {"SMSREG_NOPE_X": "1"}, "unknown environment setting SMSREG_NOPE_X"),
        ("", {"SMSREG_SERVER_PROT": "1"}, "unknown config key 'server.prot'"),
        ("mode: staging\n", {}, "mode"),
        ("redis:\n  mode: sentinel\n", {}, "'redis.mode' must be standalone or cluster"),
        ("", {"SMSREG_MODE": "production"}, "production mode refuses"),
        # Declared rules (services/config/sections.py), one of each kind, and one between keys.
        ("limits:\n  sms_per_ip_hour: 0\n", {}, "'limits.sms_per_ip_hour' must be positive"),
        ("captcha:\n  pool_size: -1\n", {}, "'captcha.pool_size' must be 0 or more"),
        ("voice:\n  play_times: 4\n", {}, "'voice.play_times' must be 1, 2 or 3"),
        ("fraud:\n  budget_share_poor: 1.5\n", {}, "'fraud.budget_share_poor' must be in (0, 1]"),
        ("", {"SMSREG_VOICE_TIMEZONE": "Mars/Base"}, "'voice.timezone': unknown time zone"),
        ("", {"SMSREG_SERVER_HOST": "nowhere"}, "'server.host': "),
        ("", {"SMSREG_PROVIDERS": "ronglian, ronglian"}, "'providers' must list distinct"),
        ("fraud:\n  window: 5\n", {}, "'fraud.window' must be at least 'fraud.buckets'"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, environ, message):
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_environment_overrides_the_file_with_yaml_scalars(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("server:\n  port: 8000\nsms:\n  template_id: '7'\n", encoding="utf-8")
    environ = {"SMSREG_SERVER_PORT": "8080", "SMSREG_SMS_TEMPLATE_ID": "12", "HOME": "/x"}
    config = load_config(path, environ=environ)
    assert config.server.port == 8080
    assert config.sms.template_id == "12"  # digits stay a string for a string setting


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yml", environ={})


def test_a_section_whose_name_holds_an_underscore_is_set_from_the_environment():
    environ = {"SMSREG_HOST_APP_KIND": "news", "SMSREG_HOST_APP_SECRET_KEY": "k" * 40}
    environ["SMSREG_HOST_APP_REDIS_URL"] = "redis://127.0.0.1:6379/3"
    config = load_config(SHIPPED, environ=environ)
    assert (config.host_app.kind, config.host_app.secret_key) == ("news", "k" * 40)
    with pytest.raises(
        ConfigError, match=r"'host_app\.redis_url' must be set when 'host_app\.kind' is ihome"
    ):
        load_config(SHIPPED, environ={"SMSREG_HOST_APP_KIND": "ihome"})
