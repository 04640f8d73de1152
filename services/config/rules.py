"""The rules a setting's value must meet, and the parsers of settings written as text.

A rule returns what is wrong with a value ("must be positive, got 0"), or None: one function
(checks.check_settings) applies every section's rules and words the error.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import zoneinfo
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.clientip import parse_networks
from services.meiduo_pages import MeiduoTemplateError, load_meiduo_pages
from services.tokens.keyring import KeyringError, load_keyring

# A rule takes the value of the setting it is declared on (any type: int, str, tuple ...).
Rule = Callable[[Any], str | None]

# Spoken samples of every alphabet character (scripts/make-voices.sh); the package has digits only.
VOICES_DIR = Path(__file__).resolve().parents[2] / "assets" / "voices"
PROVIDER_NAMES = ("ronglian", "aliyun")
# WebOTP's origin-bound line "@<host> #<code>": a host name, nothing else.
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
WEBOTP_DOMAIN_RE = re.compile(rf"(?=.{{1,253}}$)(?:{HOST_LABEL}\.)*{HOST_LABEL}")
# A web origin as browsers send it: scheme, host, optional port; no path, no trailing slash.
WEB_ORIGIN_RE = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value!r}"


def at_least(low: int, wording: str) -> Rule:
    return lambda value: None if value >= low else f"must be {wording}"


def at_most(high: float) -> Rule:
    return lambda value: None if value <= high else f"must be at most {high}"


def between(low: float, high: float, wording: str) -> Rule:
    """low <= value <= high."""
    return lambda value: None if low <= value <= high else f"must be {wording}"


def fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]"


def one_of(*choices: str) -> Rule:
    said = " or ".join(choices)
    return lambda value: None if value in choices else f"must be {said}, got {value!r}"


def log_level(value: str) -> str | None:
    if value.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return None
    return "must be DEBUG/INFO/WARNING/ERROR"


def parsed_by(parse: Callable[[str], object]) -> Rule:
    """The value must parse: the parser's ValueError says why not."""

    def rule(value: str) -> str | None:
        try:
            parse(value)
        except ValueError as exc:
            return f": {exc}"
        return None

    return rule


def clock(value: str) -> str | None:
    try:
        clock_time(value)
    except ValueError:
        return "must be HH:MM"
    return None


def time_zone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f": unknown time zone {value!r}"
    return None


def host_name_or_empty(value: str) -> str | None:
    if not value or WEBOTP_DOMAIN_RE.fullmatch(value):
        return None
    return "must be a bare host name such as example.com (no scheme, port or path), or empty"


def url_token(value: str) -> str | None:
    if len(value) >= 16 and value.replace("-", "").isalnum():
        return None
    return "must be 16+ letters, digits or '-'"


def spoken_alphabet(value: str) -> str | None:
    if len(set(value)) < 10:
        return "needs at least 10 distinct characters"
    unspoken = sorted(c for c in set(value) if not (VOICES_DIR / c).is_dir())
    if unspoken:
        return (
            f": no audio samples for {''.join(unspoken)!r} "
            "(run scripts/make-voices.sh with the new alphabet)"
        )
    return None


def provider_list(value: Sequence[str]) -> str | None:
    if not value:
        return "must name at least one provider"
    if any(name not in PROVIDER_NAMES for name in value) or len(set(value)) != len(value):
        return f"must list distinct names of {', '.join(PROVIDER_NAMES)}, got {', '.join(value)}"
    return None


networks = parsed_by(parse_networks)


def operator_list(spec: str) -> tuple[frozenset[int], frozenset[str]]:
    """(user ids, canonical mobiles) of `ops.operators`: comma-separated entries, each a user id
    (up to 10 digits) or a mainland mobile in any spelling; ValueError names a bad entry."""
    from services.accounts.mobiles import canonical_mobile  # phonenumbers: only when used

    user_ids: set[int] = set()
    mobiles: set[str] = set()
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        mobile = canonical_mobile(entry)
        if mobile is not None:
            mobiles.add(mobile)
        elif entry.isascii() and entry.isdigit() and len(entry) <= 10 and int(entry) > 0:
            user_ids.add(int(entry))
        else:
            raise ValueError(f"{entry[:20]!r} is neither a user id nor a mainland mobile")
    return frozenset(user_ids), frozenset(mobiles)


HEX_COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")
# A relative or same-site path, or an https URL: what a page may link or load from config.
PAGE_URL_RE = re.compile(r"(/[^\s\"'<>]*|https://[^\s\"'<>/]+(/[^\s\"'<>]*)?)")


def white_text_colour(value: str) -> str | None:
    """A #rrggbb colour that white text on it reads at 4.5:1 or more (WCAG 1.4.3): the
    brand colour is the primary button's background."""
    if not HEX_COLOUR_RE.fullmatch(value):
        return f"must be a colour written #rrggbb, got {value!r}"
    ratio = 1.05 / (relative_luminance(value) + 0.05)
    if ratio < 4.5:
        return f"must let white text on it read at 4.5:1 (WCAG AA), {value} gives {ratio:.1f}:1"
    return None


def relative_luminance(colour: str) -> float:
    """WCAG 2's relative luminance of #rrggbb."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def page_url(value: str) -> str | None:
    if PAGE_URL_RE.fullmatch(value):
        return None
    return f"must be a path starting with / or an https:// URL, got {value!r}"


def site_path_or_empty(value: str) -> str | None:
    """Empty, or a path of this site (the pages' CSP loads images from 'self' only)."""
    if not value or (re.fullmatch(r"/[^\s\"'<>]*", value) and not value.startswith("//")):
        return None
    return f"must be a path of this site starting with / (or empty), got {value!r}"


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def version_label(value: str) -> str | None:
    if re.fullmatch(r"[0-9A-Za-z._-]{1,32}", value):
        return None
    return "must be 1-32 letters, digits, '.', '_' or '-'"


def clock_time(value: str) -> datetime.time:
    """'22:00' -> time(22, 0) (ValueError otherwise)."""
    return datetime.datetime.strptime(value, "%H:%M").time()


def listen_hosts(spec: str) -> list[str | None]:
    """'127.0.0.1, ::1' -> the addresses to listen on; '' -> [None]: every address of both
    families; '::' alone is every IPv6 address (Tornado sets IPV6_V6ONLY)."""
    hosts = [part.strip() for part in spec.split(",") if part.strip()]
    if not hosts:
        return [None]
    for host in hosts:
        if host != "localhost":
            ipaddress.ip_address(host)  # ValueError: not an address
    return list(hosts)


def cluster_nodes(spec: str) -> list[tuple[str, int]]:
    """'10.0.0.1:7000, 10.0.0.2:7000' -> [(host, port), ...]; at least one node."""
    return host_port_list(spec, "cluster mode needs at least one host:port")


def host_port_list(
    spec: str, when_empty: str = "needs at least one host:port"
) -> list[tuple[str, int]]:
    """'10.0.0.1:3306, 10.0.0.2:3306' -> [(host, port), ...] in order; at least one."""
    nodes = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{part!r} is not host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError(when_empty)
    return nodes


def host_ports_or_empty(spec: str) -> str | None:
    return parsed_by(host_port_list)(spec) if spec.strip() else None


def meiduo_templates_or_empty(value: str) -> str | None:
    """Empty, or a directory whose register.html and login.html compile and render; compiled
    here once per process (load_meiduo_pages caches them for the workers)."""
    if not value:
        return None
    try:
        load_meiduo_pages(value)
    except MeiduoTemplateError as exc:
        return ": " + " ".join(str(exc).split())  # one line, whatever the template said
    return None


def web_origins(value: str) -> str | None:
    """A comma-separated list of origins ("https://app.example.com"), or empty."""
    for origin in filter(None, (part.strip() for part in value.split(","))):
        if not WEB_ORIGIN_RE.fullmatch(origin):
            return f"must list origins such as https://app.example.com, got {origin!r}"
    return None


def origin_list(value: str) -> frozenset[str]:
    """The origins of a web_origins setting."""
    return frozenset(filter(None, (part.strip() for part in value.split(","))))


def keyring_or_empty(value: str) -> str | None:
    """A keyring file (python -m tools.keys) that loads and names one active key, or empty."""
    if not value:
        return None
    try:
        load_keyring(Path(value))
    except KeyringError as exc:
        return f": {exc}"
    return None
