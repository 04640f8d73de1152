"""The plots of docs/PERFORMANCE.md (docs/perf/*.png), drawn from a results dict."""

from __future__ import annotations

from pathlib import Path

from bench.systems import NAMES

DOCS = Path(__file__).resolve().parent.parent / "docs"
PERF = DOCS / "perf"
COLORS = {"a": "tab:green", "A": "tab:olive", "b": "tab:red", "c": "tab:blue", "c+": "tab:purple"}


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    sms = [c for c in results["cells"] if c["section"] == "sms"]
    for metric, fname, ylabel in (
        ("ok_per_s", "sms_throughput.png", "successful requests / s (log)"),
        ("p99_ms", "sms_p99.png", "p99 latency, ms (log)"),
    ):
        plot_sms(sms, metric, ylabel, PERF / fname)
    caps = [c for c in results["cells"] if c["section"] == "captcha"]
    if caps:
        plot_captcha(caps, PERF / "captcha.png")
    overload = [c for c in results["cells"] if c["section"] == "overload"]
    if overload:
        plot_overload(overload, PERF / "overload.png")
    if any(c["section"] == "retry" for c in results["cells"]):
        plot_goodput(results["cells"], DOCS / "overload-goodput.png")


def plot_goodput(cells: list[dict], path: Path) -> None:
    """Issue 26 goal 1: successful sends/s against connections, and the accepted p99."""
    import matplotlib.pyplot as plt

    from bench.report_overload import GOODPUT_SHARE, best_reference

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.4, 4))
    lines = (
        ("retry", "O", "tab:green", "o", "(O) shipped admission, clients repeat a 503 at once"),
        ("overload", "O", "tab:olive", "s", "(O) shipped admission, clients wait Retry-After"),
        ("overload", "Q", "tab:red", "^", "(Q) no admission control"),
    )
    for section, system, color, marker, label in lines:
        pts = sorted(
            (c["connections"], c)
            for c in cells
            if c["section"] == section and c["system"] == system and c["latency_ms"] == 100
        )
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ys = [c["ok_per_s"] for _, c in pts]
        ax1.plot(xs, ys, marker=marker, color=color, label=label)
        ax2.plot(xs, [c["p99_ms"] or 0 for _, c in pts], marker=marker, color=color, label=label)
        for x, y in zip(xs, ys, strict=True):
            ax1.annotate(f"{y:,.0f}", (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4))
    best = best_reference(cells)
    if best:
        floor = GOODPUT_SHARE * best["ok_per_s"]
        ax1.axhline(floor, color="gray", ls="--", lw=1)
        ax1.annotate(
            f"target: {GOODPUT_SHARE:.0%} of the best without admission "
            f"({best['ok_per_s']:,.0f}/s)",
            (ax1.get_xlim()[0], floor),
            fontsize=7,
            color="gray",
            xytext=(2, -10),
            textcoords="offset points",
        )
    ax1.set_ylim(bottom=0)
    ax2.axhline(300, color="gray", ls="--", lw=1)
    ax2.annotate("target: 3x upstream = 300 ms", (ax2.get_xlim()[0], 300), fontsize=7, color="gray")
    ax2.set_yscale("log")
    ax1.set_title("successful sends / s (100 ms upstream, 1 process)")
    ax2.set_title("accepted sends: p99 latency, ms (log)")
    for ax in (ax1, ax2):
        ax.set_xlabel("concurrent connections")
        ax.set_xscale("log")
        ticks = sorted({c["connections"] for c in cells if c["section"] in ("retry", "overload")})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_overload(cells: list[dict], path: Path) -> None:
    """Accepted p99 and the shares shed / timed out against connections, (O) and (Q)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.4, 4))
    for system, color in (("O", "tab:green"), ("Q", "tab:red")):
        pts = sorted((c["connections"], c) for c in cells if c["system"] == system)
        if not pts:
            continue
        xs = [x for x, _ in pts]
        label = NAMES.get(system, system)
        ax1.plot(xs, [c["p99_ms"] or 0 for _, c in pts], marker="o", color=color, label=label)
        answered = [max(1, c["ok"] + c.get("shed", 0) + c["errors"]) for _, c in pts]
        shed = [100 * c.get("shed", 0) / n for (_, c), n in zip(pts, answered, strict=True)]
        lost = [100 * c["timeouts"] / n for (_, c), n in zip(pts, answered, strict=True)]
        ax2.plot(xs, shed, marker="o", color=color, label=f"{system}: shed (fast 503)")
        ax2.plot(xs, lost, marker="x", ls="--", color=color, label=f"{system}: client timeouts")
        for x, (_, c) in zip(xs, pts, strict=True):
            ax1.annotate(
                f"{c['p99_ms'] or 0:,.0f}",
                (x, c["p99_ms"] or 0),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax1.axhline(300, color="gray", ls="--", lw=1)
    ax1.annotate("target: 3x upstream = 300 ms", (ax1.get_xlim()[0], 300), fontsize=7, color="gray")
    ax1.set_yscale("log")
    ax1.set_title("accepted sends: p99 latency, ms (log)")
    ax2.set_title("share of answers, %")
    for ax in (ax1, ax2):
        ax.set_xlabel("concurrent connections")
        ax.set_xticks(sorted({c["connections"] for c in cells}))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sms(cells: list[dict], metric: str, ylabel: str, path: Path) -> None:
    """One panel per upstream latency: `metric` against connections, a line per system."""
    import matplotlib.pyplot as plt

    latencies = sorted({c["latency_ms"] for c in cells})
    systems = [s for s in ("a", "A", "b", "c", "c+") if any(c["system"] == s for c in cells)]
    systems += sorted({c["system"] for c in cells} - set(systems))
    fig, axes = plt.subplots(1, len(latencies), figsize=(5.2 * len(latencies), 4), squeeze=False)
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
            ax.plot(xs, ys, marker="o", label=NAMES.get(s, s), color=COLORS.get(s))
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
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_captcha(caps: list[dict], path: Path) -> None:
    """Images per second and loop lag p99 during the flood, a bar per system."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    short = {"a": "(a) ours\n1 process", "A": "(A) ours\n2 processes", "c": "(c) inline"}
    labels = [short.get(c["system"], c["system"]) for c in caps]
    bar_colors = [COLORS.get(c["system"], "gray") for c in caps]
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
