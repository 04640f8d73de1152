"""Summarize a py-spy raw profile of our server: categories, send_code steps, top functions."""

from __future__ import annotations

import collections
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# py-spy frames look like "function (path/to/file.py:123)". A sample is charged to the innermost
# frame that is not generic plumbing (asyncio, selectors, Tornado's loop glue), so a socket
# write made by redis-py counts as Redis client time, not as event-loop time.
GENERIC = re.compile(
    r"[(/]asyncio/|selectors\.py|tornado/(ioloop|gen|concurrent|platform/asyncio)\.py|<frozen|"
    r"\(server\.py|"  # main(), run(), serve(): the process's entry, not per-request work
    r"[(/](abc|functools|contextlib|typing|enum|socket|ssl|threading|weakref|_weakrefset)\.py"
)
CATEGORIES = [
    ("logging", re.compile(r"[(/]logging/|log_request")),
    ("JSON encode/decode", re.compile(r"[(/]json/")),
    ("Prometheus metrics (prometheus_client)", re.compile(r"prometheus_client")),
    ("Redis client (redis.asyncio)", re.compile(r"[(/]redis/")),
    ("MySQL client (aiomysql/PyMySQL)", re.compile(r"[(/](aiomysql|pymysql)/")),
    (
        "Ronglian HTTP client (tornado curl_httpclient)",
        re.compile(r"curl_httpclient|tornado/httpclient\.py|tornado/simple_httpclient"),
    ),
    ("XSRF/cookies/signed values", re.compile(r"xsrf|cookie|signed_value|_create_signature")),
    ("our code: services/, handlers/", re.compile(r"[(/](services|handlers)/")),
    ("Tornado RequestHandler (web.py, routing)", re.compile(r"tornado/(web|routing|escape)\.py")),
    (
        "Tornado HTTP/1.1 server + IOStream",
        re.compile(r"tornado/(http1connection|iostream|httpserver|httputil|tcpserver|netutil)\.py"),
    ),
]
OTHER = "other (stdlib: hmac, re, secrets, ipaddress, email.utils ...)"
LOOP = "event loop itself (asyncio scheduling, epoll, timers)"
LINE_RE = re.compile(r":\d+\)$")


def summarize_profile(raw: Path, cell: dict, source_root: Path = ROOT) -> dict:
    """Categories, per-step costs of the SMS flow and top functions of a py-spy raw profile."""
    by_category: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    steps: collections.Counter[str] = collections.Counter()
    total = other_threads = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        if not frames[0].startswith("<module>"):
            # Executor threads parked on their queue look busy to py-spy; the SMS flow runs
            # on the event loop (the main thread) only.
            other_threads += n
            continue
        total += n
        self_time[LINE_RE.sub(")", frames[-1])] += n
        for name in {LINE_RE.sub(")", f) for f in frames}:
            inclusive[name] += n
        by_category[_categorize(frames)] += n
        for name in {f for f in frames if f.startswith("SmsCodeService.send_code (")}:
            steps[name] += n
    us = cell.get("server_cpu_us_per_ok") or 0
    per_request = lambda v: round(us * v / total) if total else 0  # noqa: E731
    pct = lambda v: round(100 * v / total, 1) if total else 0.0  # noqa: E731
    sources = _source_lines(source_root / "services" / "sms.py")
    return {
        "samples": total,
        "samples_other_threads_ignored": other_threads,
        "rate_hz": 200,
        "server_cpu_us_per_ok": us,
        "ok_per_s_while_profiled": cell["ok_per_s"],
        "categories": [
            {"category": k, "pct": pct(v), "us_per_request": per_request(v)}
            for k, v in by_category.most_common()
        ],
        "send_code_steps": [
            {
                "line": k,
                "code": sources.get(_line_no(k), ""),
                "pct": pct(v),
                "us_per_request": per_request(v),
            }
            for k, v in sorted(steps.items(), key=lambda kv: _line_no(kv[0]))
        ],
        "top_self": [{"function": k, "pct": pct(v)} for k, v in self_time.most_common(25)],
        "top_inclusive": [
            {"function": k, "pct": pct(v)}
            for k, v in inclusive.most_common(80)
            if not GENERIC.search(k) and not k.startswith("<module>")
        ][:40],
    }


def _line_no(frame: str) -> int:
    match = re.search(r":(\d+)\)$", frame)
    return int(match.group(1)) if match else 0


def _source_lines(path: Path) -> dict[int, str]:
    try:
        return {i: t.strip() for i, t in enumerate(path.read_text().splitlines(), start=1)}
    except OSError:
        return {}


def _short(frame: str) -> str:
    """'get (/work/main/.venv/lib/python3.11/site-packages/redis/client.py:12)' -> shorter."""
    return re.sub(r"\(/\S*?/(site-packages|python3\.\d+|main)/", "(", frame)


def _categorize(frames: list[str]) -> str:
    for frame in reversed(frames[1:]):  # frames[0] is server.py's <module>: not a category
        if GENERIC.search(frame):
            continue
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
        return OTHER
    return LOOP
