"""What the soak concludes: its criteria (errors, accounting, memory), the plot
docs/perf/soak_rss.png and the generated section of docs/LOAD.md."""

from __future__ import annotations

import argparse
import statistics

from bench import report
from bench.soak_measure import median_or_none, round_or_none
from bench.stack import ROOT

DOC = ROOT / "docs" / "LOAD.md"
PLOT = ROOT / "docs" / "perf" / "soak_rss.png"
BEGIN, END = "<!-- soak:results:begin -->", "<!-- soak:results:end -->"
SLOPE_WINDOW_S = 40


# ---- the criteria -------------------------------------------------------------------------


def criteria(load: dict, inbox: dict, counters: dict, memory: dict, inbox_limit: int) -> dict:
    """errors, accounting and memory, each with pass and what it was decided on."""
    errors_ok = (
        load["errors"] == 0
        and not load["exhausted"]
        and load["in_flight_left"] == 0
        and load["sent"] == load["ok"]
    )
    accounting_ok = (
        load["ok"] == inbox["messages"]
        and inbox["distinct_mobiles"] == inbox["messages"]
        and inbox["messages"] < inbox_limit
    )
    return {
        "errors": {
            "pass": errors_ok,
            "errors": load["errors"],
            "error_answers": load["error_answers"],
            "timeouts": load["timeouts"],
            "connection_errors": load["connection_errors"],
            "outcomes": load["outcomes"],
            "sent": load["sent"],
            "answered_ok": load["ok"],
            "exhausted": load["exhausted"],
        },
        "accounting": {
            "pass": accounting_ok,
            "ok_answers": load["ok"],
            "inbox_messages": inbox["messages"],
            "distinct_mobiles_in_inbox": inbox["distinct_mobiles"],
            "server_sends_000000": counters["sms_sends_by_status"].get("000000"),
        },
        "memory": {"pass": memory["pass"]},
    }


def memory_verdict(
    samples: list[dict], t_warm: float, t_stop: float, args: argparse.Namespace
) -> dict:
    """Server RSS after warm-up vs at the end of the load, and the slope over the last 40 s."""
    loaded = [s for s in samples if s["t"] <= t_stop]
    near_warm = [s["server_rss_mb"] for s in loaded if abs(s["t"] - t_warm) <= 1.5]
    end = [s["server_rss_mb"] for s in loaded[-3:]]
    if not near_warm or not end:
        return {"pass": False, "reason": "not enough samples"}
    warm_mb, end_mb = statistics.median(near_warm), statistics.median(end)
    window = [
        (s["t"] / 60, s["server_rss_mb"]) for s in loaded if s["t"] >= t_stop - SLOPE_WINDOW_S
    ]
    slope = linear_slope(window)
    pss_window = [(s["t"] / 60, s["server_pss_mb"]) for s in window_samples(loaded, t_stop)]
    growth_pct = 100 * (end_mb - warm_mb) / warm_mb
    slope_limit = warm_mb * args.max_slope_pct_per_min / 100
    growth_ok = growth_pct <= args.max_growth_pct
    slope_ok = slope is not None and slope <= slope_limit
    return {
        "pass": growth_ok and slope_ok,
        "warm_rss_mb": round(warm_mb, 1),
        "end_rss_mb": round(end_mb, 1),
        "peak_rss_mb": round(max(s["server_rss_mb"] for s in loaded), 1),
        "growth_pct": round(growth_pct, 2),
        "growth_limit_pct": args.max_growth_pct,
        "growth_ok": growth_ok,
        "slope_mb_per_min": None if slope is None else round(slope, 2),
        "slope_window_s": SLOPE_WINDOW_S,
        "slope_limit_mb_per_min": round(slope_limit, 2),
        "slope_ok": slope_ok,
        "pss_slope_mb_per_min": round_or_none(linear_slope(pss_window), 2),
        "warm_pss_mb": round_or_none(
            median_or_none([s["server_pss_mb"] for s in loaded if abs(s["t"] - t_warm) <= 1.5]), 1
        ),
        "end_pss_mb": round_or_none(median_or_none([s["server_pss_mb"] for s in loaded[-3:]]), 1),
    }


def window_samples(samples: list[dict], t_stop: float) -> list[dict]:
    return [s for s in samples if t_stop - SLOPE_WINDOW_S <= s["t"] <= t_stop]


def linear_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points, None with fewer than 3."""
    if len(points) < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


# ---- the plot and the docs section --------------------------------------------------------


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    plot_memory(ax, results)
    plot_rate(ax2, results)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def plot_memory(ax, results: dict) -> None:
    """Server RSS and PSS over the run, the warm-up, the +10 % line and the fitted slope."""
    marks = results["marks_s"]
    t0 = marks["start"]
    samples = results["rss_samples"]
    xs = [s["t"] - t0 for s in samples]
    mem = results["memory"]
    ax.plot(xs, [s["server_rss_mb"] for s in samples], color="tab:green", label="server RSS (sum)")
    ax.plot(
        xs,
        [s["server_pss_mb"] for s in samples],
        color="tab:olive",
        linestyle="--",
        label="server PSS (sum)",
    )
    warm, stop = marks["warm"] - t0, marks["sending-stopped"] - t0
    ax.axvspan(min(xs), warm, color="0.9", label="warm-up")
    ax.axvline(stop, color="0.5", linewidth=0.8)
    if mem.get("warm_rss_mb"):
        limit = mem["warm_rss_mb"] * (1 + mem["growth_limit_pct"] / 100)
        ax.axhline(limit, color="tab:red", linewidth=0.8, linestyle=":", label="+10 % of warm")
        ax.axhline(mem["warm_rss_mb"], color="0.4", linewidth=0.8, linestyle=":")
    if mem.get("slope_mb_per_min") is not None:
        window = [s for s in samples if stop - SLOPE_WINDOW_S <= s["t"] - t0 <= stop]
        my = statistics.fmean(s["server_rss_mb"] for s in window)
        mx = statistics.fmean(s["t"] - t0 for s in window)
        k = mem["slope_mb_per_min"] / 60
        fx = [stop - SLOPE_WINDOW_S, stop]
        ax.plot(
            fx,
            [my + k * (x - mx) for x in fx],
            color="black",
            linewidth=1,
            label=f"fit, last {SLOPE_WINDOW_S} s: {mem['slope_mb_per_min']:+.2f} MB/min",
        )
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    load = results["load"]
    ax.set_title(
        f"server.py under {load['connections']} connections, sandbox {results['latency_ms']} ms",
        fontsize=10,
    )


def plot_rate(ax2, results: dict) -> None:
    """OK answers per second, from the load generator's per-second timeline."""
    marks = results["marks_s"]
    stop = marks["sending-stopped"] - marks["start"]
    prev = {"t": 0.0, "ok": 0}
    rate_x, rate_y = [], []
    for point in results["timeline"]:
        dt = point["t"] - prev["t"]
        if dt > 0.2:
            rate_x.append(point["t"])
            rate_y.append((point["ok"] - prev["ok"]) / dt)
        prev = point
    ax2.plot(rate_x, rate_y, color="tab:blue")
    ax2.axvline(stop, color="0.5", linewidth=0.8)
    ax2.set_ylabel("OK answers / s")
    ax2.set_xlabel("seconds since the first request")
    ax2.set_ylim(bottom=0)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Run of {results['generated']} (commit {m['commit']}, {m['cpus']} × {m['cpu_model']}, "
        f"Python {m['python']}), {results['wall_s']} s wall time:",
        "",
        f"    {results['command']}",
        "",
        *_criteria_table(results),
        "",
        *_facts_table(results),
        "",
        *_cpu_table(results["cpu_pct"]),
        "",
        *_connections_table(results),
        "",
        "Memory of the other processes (RSS after warm-up → end; they are not part of the "
        "criterion):",
        "",
        "| process | after warm-up | end |",
        "|---|---:|---:|",
        *(
            f"| {name} | {v['warm_rss_mb']} MB | {v['end_rss_mb']} MB |"
            for name, v in results["memory_others"].items()
        ),
        "",
        "![server RSS and throughput over the soak](perf/soak_rss.png)",
    ]
    return "\n".join(lines)


def _criteria_table(results: dict) -> list[str]:
    load, mem, crit = results["load"], results["memory"], results["criteria"]
    acc = crit["accounting"]
    return [
        "| criterion | measured | verdict |",
        "|---|---|---:|",
        f"| 0 errors | {load['errors']} errors ({load['error_answers']} error answers, "
        f"{load['timeouts']} client timeouts, {load['connection_errors']} connection errors); "
        f"{load['sent']:,} requests sent, {load['ok']:,} answered OK"
        f"{', ran out of seeded CAPTCHAs' if load['exhausted'] else ''} "
        f"| {verdict(crit['errors']['pass'])} |",
        f"| OK answers = sandbox inbox | {acc['ok_answers']:,} OK = {acc['inbox_messages']:,} "
        f"messages ({acc['distinct_mobiles_in_inbox']:,} distinct mobiles; the server counted "
        f"{acc['server_sends_000000'] or 0:,} accepted sends) | {verdict(acc['pass'])} |",
        f"| memory flat | server tree RSS {mem.get('warm_rss_mb')} MB after warm-up → "
        f"{mem.get('end_rss_mb')} MB at the end ({mem.get('growth_pct', 0):+.1f} %, limit "
        f"+{mem.get('growth_limit_pct')} %); slope over the last {SLOPE_WINDOW_S} s "
        f"{mem.get('slope_mb_per_min')} MB/min (limit {mem.get('slope_limit_mb_per_min')}) "
        f"| {verdict(mem['pass'])} |",
    ]


def _facts_table(results: dict) -> list[str]:
    load, steady, mem = results["load"], results["load"]["steady"], results["memory"]
    lag = results["lag"]
    # master + workers
    workers = sum(1 for c in results["server_processes"].values() if "server.py" in c)
    return [
        "| | |",
        "|---|---:|",
        f"| connections / duration / sandbox latency | {load['connections']} / "
        f"{load['sending_s']:.0f} s (+{load['drain_s']:.1f} s to collect the answers in flight) "
        f"/ {results['latency_ms']} ms |",
        f"| server processes | {results['processes_label']}; "
        f"{len(results['server_processes'])} processes in the tree: "
        f"{workers_label(workers)}, and each worker's forkserver, render process and "
        f"resource tracker |",
        f"| OK answers / s, whole run | {load['ok_per_s']:,} |",
        f"| OK answers / s, after the {steady_warmup(load)} s warm-up | {steady['ok_per_s']:,} |",
        f"| latency p50 / p90 / p99 / max, after warm-up | {steady['p50_ms']} / "
        f"{steady['p90_ms']} / {steady['p99_ms']} / {steady['max_ms']} ms |",
        f"| latency p50 / p99 / max, whole run | {load['p50_ms']} / {load['p99_ms']} / "
        f"{load['max_ms']} ms |",
        f"| event-loop lag probe p50 / p99 / max (after warm-up) | {lag['p50_ms']} / "
        f"{lag['p99_ms']} / {lag['max_ms']} ms ({lag['errors']} errors) |",
        f"| server CPU per OK answer | {results['server_cpu_us_per_ok']} µs |",
        f"| server log lines above INFO | {results['server_log_problems']['count']} |",
        f"| server RSS peak / PSS after warm-up → end | {mem.get('peak_rss_mb')} MB / "
        f"{mem.get('warm_pss_mb')} → {mem.get('end_pss_mb')} MB "
        f"(PSS slope {mem.get('pss_slope_mb_per_min')} MB/min) |",
    ]


def _cpu_table(cpu: dict) -> list[str]:
    return [
        "CPU after warm-up, % of one core (the machine has 200 %):",
        "",
        "| server | sandbox | Redis | MariaDB | load generator | others | machine busy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {cpu['server']} | {cpu['sandbox']} | {cpu['redis']} | {cpu['mariadb']} | "
        f"{cpu['loadgen']} | {cpu['others']} | {cpu['machine_busy_of_200']} |",
    ]


def _connections_table(results: dict) -> list[str]:
    limits = pool_limits(results)
    return [
        "Open TCP connections per server process, the most seen while the load ran (`ss`, "
        "every 2 s). Client connections are spread over the workers by the kernel; the others "
        "are the high-water marks of each worker's pools (limits: Redis "
        f"`max_connections` {limits['redis']}, MariaDB `pool_max` {limits['mariadb']}, "
        f"Ronglian `max_clients` {limits['sandbox']}):",
        "",
        "| process | clients | Redis | MariaDB | sandbox |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {pid} | {c.get('clients', 0)} | {c.get('redis', 0)} | {c.get('mariadb', 0)} | "
            f"{c.get('sandbox', 0)} |"
            for pid, c in sorted(results["connections_max"].items())
        ),
    ]


def effective_config(server_env: dict[str, str]) -> dict[str, object]:
    """The settings that bound a worker under load: config.yml plus the run's overrides."""
    from services.config import load_config

    config = load_config(ROOT / "config.yml", environ=server_env)
    return {
        "server.processes": config.server.processes,
        "redis.max_connections": config.redis.max_connections,
        "redis.socket_timeout": config.redis.socket_timeout,
        "mysql.pool_max": config.mysql.pool_max,
        "mysql.query_timeout": config.mysql.query_timeout,
        "ronglian.max_clients": config.ronglian.max_clients,
        "ronglian.request_timeout": config.ronglian.request_timeout,
    }


def pool_limits(results: dict) -> dict[str, object]:
    """The pool sizes the server ran with."""
    config = results.get("server_config") or effective_config(results.get("server_env", {}))
    return {
        "redis": config["redis.max_connections"],
        "mariadb": config["mysql.pool_max"],
        "sandbox": config["ronglian.max_clients"],
    }


def workers_label(server_py: int) -> str:
    """server.py processes: one serves alone, more are a supervisor and its workers."""
    return "1 server.py" if server_py == 1 else f"supervisor + {server_py - 1} workers"


def steady_warmup(load: dict) -> str:
    return f"{load['warmup_s']:g}"


def write_docs(results: dict) -> None:
    plot(results)
    report.replace_generated_section(
        DOC, (BEGIN, END), render_markdown(results), "# Load: the soak test"
    )
