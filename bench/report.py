"""Turn bench results into ratios, target checks, a profile summary, plots and the docs table."""

from __future__ import annotations

import collections
import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
PERF = ROOT / "docs" / "perf"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
NAMES = {
    "a": "(a) ours, 1 process",
    "A": "(A) ours, 2 processes (default)",
    "b": "(b) Flask+gunicorn 4 sync",
    "c": "(c) naive Tornado",
}

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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"


def _cell(cells, section, system, latency, conns):
    for c in cells:
        if (c["section"], c["system"], c["latency_ms"], c["connections"]) == (
            section,
            system,
            latency,
            conns,
        ):
            return c
    return None


def ratios(cells: list[dict]) -> list[dict]:
    """a/b and a/c (throughput, and throughput per server CPU-second) for every SMS cell."""
    out = []
    keys = sorted({(c["latency_ms"], c["connections"]) for c in cells if c["section"] == "sms"})
    for latency, conns in keys:
        a = _cell(cells, "sms", "a", latency, conns)
        if not a:
            continue
        row = {"latency_ms": latency, "connections": conns}
        for other in ("b", "c"):
            o = _cell(cells, "sms", other, latency, conns)
            if o and o["ok_per_s"]:
                row[f"a/{other}"] = round(a["ok_per_s"] / o["ok_per_s"], 2)
            if o and o.get("ok_per_server_cpu_s") and a.get("ok_per_server_cpu_s"):
                row[f"a/{other}_per_cpu"] = round(
                    a["ok_per_server_cpu_s"] / o["ok_per_server_cpu_s"], 2
                )
        out.append(row)
    cap_a = _cell(cells, "captcha", "a", None, 50) or next(
        (c for c in cells if c["section"] == "captcha" and c["system"] == "a"), None
    )
    cap_c = next((c for c in cells if c["section"] == "captcha" and c["system"] == "c"), None)
    if cap_a and cap_c and cap_c["ok_per_s"]:
        out.append({"captcha": True, "a/c": round(cap_a["ok_per_s"] / cap_c["ok_per_s"], 2)})
    return out


def targets(cells: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured value and pass/fail."""
    checks = []
    a = _cell(cells, "sms", "a", 100, 200)
    b = _cell(cells, "sms", "b", 100, 200)
    c = _cell(cells, "sms", "c", 100, 200)
    if a and b and b["ok_per_s"]:
        v = a["ok_per_s"] / b["ok_per_s"]
        checks.append(
            {"target": "SMS 100 ms/200 conns: a >= 30x b", "value": round(v, 1), "pass": v >= 30}
        )
    if a and c and c["ok_per_s"]:
        v = a["ok_per_s"] / c["ok_per_s"]
        checks.append(
            {"target": "SMS 100 ms/200 conns: a >= 2.5x c", "value": round(v, 2), "pass": v >= 2.5}
        )
    if a and c and c.get("ok_per_server_cpu_s") and a.get("ok_per_server_cpu_s"):
        v = a["ok_per_server_cpu_s"] / c["ok_per_server_cpu_s"]
        checks.append(
            {
                "target": "SMS 100 ms/200 conns: a >= 2.5x c per server CPU-second",
                "value": round(v, 2),
                "pass": v >= 2.5,
            }
        )
    if a and a["p99_ms"] is not None:
        checks.append(
            {
                "target": "SMS 100 ms/200 conns: a p99 <= 150 ms",
                "value": a["p99_ms"],
                "pass": a["p99_ms"] <= 150,
            }
        )
    cap_a = next((x for x in cells if x["section"] == "captcha" and x["system"] == "a"), None)
    cap_c = next((x for x in cells if x["section"] == "captcha" and x["system"] == "c"), None)
    if cap_a and cap_c and cap_c["ok_per_s"]:
        v = cap_a["ok_per_s"] / cap_c["ok_per_s"]
        checks.append({"target": "CAPTCHA: a >= 2x inline", "value": round(v, 2), "pass": v >= 2})
    if cap_a and cap_c and cap_c.get("ok_per_server_cpu_s") and cap_a.get("ok_per_server_cpu_s"):
        v = cap_a["ok_per_server_cpu_s"] / cap_c["ok_per_server_cpu_s"]
        checks.append(
            {
                "target": "CAPTCHA: a >= 2x inline per server CPU-second",
                "value": round(v, 2),
                "pass": v >= 2,
            }
        )
    if cap_a and cap_a["lag"]["p99_ms"] is not None:
        checks.append(
            {
                "target": "CAPTCHA flood: loop lag p99 <= 10 ms",
                "value": cap_a["lag"]["p99_ms"],
                "pass": cap_a["lag"]["p99_ms"] <= 10,
            }
        )
    return checks


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


# ---- docs ----------------------------------------------------------------------------------


def write_docs(results: dict) -> None:
    PERF.mkdir(parents=True, exist_ok=True)
    plot(results)
    replace_generated_section(DOC, (BEGIN, END), render_markdown(results), "# Performance")


def replace_generated_section(doc, markers: tuple[str, str], body: str, title: str) -> None:
    """Rewrite the text between the markers in doc, keeping the hand-written text around it."""
    begin, end = markers
    section = "\n".join([begin, body, end])
    if doc.exists():
        text = doc.read_text(encoding="utf-8")
        if begin in text and end in text:
            head, _, rest = text.partition(begin)
            _, _, tail = rest.partition(end)
            doc.write_text(head + section + tail, encoding="utf-8")
            print(f"updated the generated section of {doc}")
            return
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{title}\n\n{section}\n", encoding="utf-8")
    print(f"wrote {doc}")


def machine_info() -> dict:
    """What the numbers were measured on, for the results JSON."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "commit": git_commit(),
    }


def _fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float | int) else str(v)


def render_markdown(results: dict) -> str:
    cells = results["cells"]
    s = results["settings"]
    lines = [
        f"_Generated by `{results['command']}` on {results['generated']} "
        f"(commit {results['machine']['commit']}, {results['machine']['cpus']} × "
        f"{results['machine']['cpu_model']}, Python {results['machine']['python']}; "
        f"{s['warmup_s']:g} s warm-up + {s['duration_s']:g} s per cell, "
        f"client timeout {s['client_timeout_s']:g} s; best of {s.get('repeat', 1)} interleaved "
        f"rounds per cell; wall time {results['wall_s']} s)._",
        "",
        "CPU columns are % of one core during the measured window, from /proc. `others` is what "
        "the rest of this shared machine (other sessions' test suites, browsers) used meanwhile: "
        "the servers under test only got what was left. `req per CPU-s` = successful requests per "
        "CPU-second of the server's own processes (all 4 workers for (b)): the per-process "
        "efficiency, much less sensitive to that noise than req/s.",
        "",
        "### SMS-code flow (`GET /api/v1.0/sms_codes/<mobile>`)",
        "",
        "| upstream | conns | system | ok req/s | p50 ms | p99 ms | errors (timeouts) "
        "| lag p99 ms | server CPU % | µs CPU/req | req per CPU-s "
        "| sandbox / redis / mariadb / loadgen / others CPU % |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    sms = [c for c in cells if c["section"] == "sms"]
    for c in sorted(sms, key=lambda c: (c["latency_ms"], c["connections"], c["system"])):
        cpu = c["cpu_pct"]
        lines.append(
            f"| {c['latency_ms']} ms | {c['connections']} | {NAMES.get(c['system'], c['system'])} "
            f"| **{_fmt(c['ok_per_s'], 1)}** | {_fmt(c['p50_ms'], 1)} | {_fmt(c['p99_ms'], 1)} "
            f"| {c['errors']} ({c['timeouts']}) | {_fmt(c['lag']['p99_ms'], 1)} "
            f"| {_fmt(cpu['server'])} | {_fmt(c['server_cpu_us_per_ok'])} "
            f"| {_fmt(c['ok_per_server_cpu_s'])} "
            f"| {_fmt(cpu['sandbox'])} / {_fmt(cpu['redis'])} / {_fmt(cpu['mariadb'])} / "
            f"{_fmt(cpu['loadgen'])} / {_fmt(cpu.get('others'))} |"
        )
    lines += [
        "",
        "Ratios (same run; `per CPU` = successful requests per CPU-second of the "
        "server's own processes):",
        "",
        "| upstream | conns | a/b | a/c | a/b per CPU | a/c per CPU |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["ratios"]:
        if r.get("captcha"):
            continue
        lines.append(
            f"| {r['latency_ms']} ms | {r['connections']} | {_fmt(r.get('a/b'), 1)}× "
            f"| {_fmt(r.get('a/c'), 2)}× | {_fmt(r.get('a/b_per_cpu'), 2)}× "
            f"| {_fmt(r.get('a/c_per_cpu'), 2)}× |"
        )
    caps = [c for c in cells if c["section"] == "captcha"]
    if caps:
        lines += [
            "",
            "### CAPTCHA images (`GET /api/v1.0/image_codes/<id>`)",
            "",
            "| conns | system | images/s | p50 ms | p99 ms | errors | loop lag p50 / p99 ms "
            "| server CPU % | images per CPU-s | others CPU % |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in caps:
            label = {
                "a": "(a) ours, 1 process (render process + ready pool)",
                "A": "(A) ours, 2 processes (default)",
                "c": "(c) inline on the loop",
            }.get(c["system"], c["system"])
            lines.append(
                f"| {c['connections']} | {label} | **{_fmt(c['ok_per_s'], 1)}** "
                f"| {_fmt(c['p50_ms'], 1)} | {_fmt(c['p99_ms'], 1)} | {c['errors']} "
                f"| {_fmt(c['lag']['p50_ms'], 1)} / **{_fmt(c['lag']['p99_ms'], 1)}** "
                f"| {_fmt(c['cpu_pct']['server'])} | {_fmt(c['ok_per_server_cpu_s'])} "
                f"| {_fmt(c['cpu_pct'].get('others'))} |"
            )
    lines += ["", "### Targets", "", "| target | measured | |", "|---|---:|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'✅' if t['pass'] else '❌'} |")
    prof = results.get("profile")
    if prof:
        lines += [
            "",
            f"### Where our server's time goes (py-spy, {prof['samples']} samples at "
            f"{prof['rate_hz']} Hz, 100 ms upstream, 200 connections, "
            f"{_fmt(prof['ok_per_s_while_profiled'], 1)} req/s while profiled, "
            f"{prof['server_cpu_us_per_ok']} µs server CPU per request)",
            "",
            "| category (innermost matching frame) | share of samples | ≈ µs per request |",
            "|---|---:|---:|",
        ]
        for c in prof["categories"]:
            lines.append(f"| {c['category']} | {c['pct']} % | {c['us_per_request']} |")
    lines += [
        "",
        "![SMS throughput](perf/sms_throughput.png)",
        "",
        "![SMS p99 latency](perf/sms_p99.png)",
        "",
    ]
    if caps:
        lines += ["![CAPTCHA images per second and loop lag](perf/captcha.png)", ""]
    return "\n".join(lines)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results["cells"] if c["section"] == "sms"]
    latencies = sorted({c["latency_ms"] for c in cells})
    systems = [s for s in ("a", "A", "b", "c") if any(c["system"] == s for c in cells)]
    systems += sorted({c["system"] for c in cells} - set(systems))
    colors = {"a": "tab:green", "A": "tab:olive", "b": "tab:red", "c": "tab:blue"}
    for metric, fname, ylabel, log in (
        ("ok_per_s", "sms_throughput.png", "successful requests / s (log)", True),
        ("p99_ms", "sms_p99.png", "p99 latency, ms (log)", True),
    ):
        fig, axes = plt.subplots(
            1, len(latencies), figsize=(5.2 * len(latencies), 4), squeeze=False
        )
        for ax, latency in zip(axes[0], latencies, strict=True):
            for s in systems:
                pts = sorted(
                    (c["connections"], c[metric])
                    for c in cells
                    if c["system"] == s and c["latency_ms"] == latency and c[metric] is not None
                )
                if not pts:
                    continue
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=NAMES.get(s, s), color=colors.get(s))
                for x, y in pts:
                    ax.annotate(
                        f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
                    )
            if metric == "p99_ms":
                ax.axhline(latency + 50, color="gray", ls="--", lw=1)
                ax.annotate(
                    f"target {latency + 50} ms (upstream + 50)",
                    (ax.get_xlim()[0], latency + 50),
                    fontsize=7,
                    color="gray",
                )
            ax.set_title(f"SMS flow, upstream latency {latency} ms")
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(ylabel)
            ax.set_xticks(sorted({c["connections"] for c in cells}))
            if log:
                ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(PERF / fname, dpi=110)
        plt.close(fig)
    caps = [c for c in results["cells"] if c["section"] == "captcha"]
    if caps:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
        short = {"a": "(a) ours\n1 process", "A": "(A) ours\n2 processes", "c": "(c) inline"}
        labels = [short.get(c["system"], c["system"]) for c in caps]
        bar_colors = [colors.get(c["system"], "gray") for c in caps]
        ax1.bar(labels, [c["ok_per_s"] for c in caps], color=bar_colors)
        ax1.set_title(f"CAPTCHA images / s ({caps[0]['connections']} connections)")
        ax2.bar(labels, [c["lag"]["p99_ms"] or 0 for c in caps], color=bar_colors)
        ax2.axhline(10, color="gray", ls="--", lw=1)
        ax2.set_title("loop lag p99 during the flood, ms")
        ax2.set_yscale("log")
        for ax, key in ((ax1, lambda c: c["ok_per_s"]), (ax2, lambda c: c["lag"]["p99_ms"] or 0)):
            for i, c in enumerate(caps):
                ax.annotate(f"{key(c):,.1f}", (i, key(c)), ha="center", va="bottom", fontsize=8)
        fig.tight_layout()
        fig.savefig(PERF / "captcha.png", dpi=110)
        plt.close(fig)
