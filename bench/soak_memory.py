"""The soak's memory sampling and memory criterion: RSS/PSS of the server's process tree once a
second, its open connections, and the verdict (growth after warm-up, slope at the end)."""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from bench.stack import descendants

SLOPE_WINDOW_S = 40


def proc_kb(path: str, field: str) -> int:
    """A `field: N kB` value from a /proc file (0 if the process is gone)."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A kB value from /proc/<pid>/status."""
    return proc_kb(f"/proc/{pid}/status", field)


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split among their users), 0 if unavailable."""
    return proc_kb(f"/proc/{pid}/smaps_rollup", "Pss")


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def connection_counts(pids: set[int], ports: dict[str, int]) -> dict[str, dict[str, int]]:
    """Established TCP connections of each server process, from `ss`.

    "clients" are connections on the server's port; the others are connections to the port
    of that name (redis, mariadb, sandbox): the high-water mark of each client pool.
    """
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established"],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    by_port = {port: name for name, port in ports.items() if name != "server"}
    counts: dict[str, dict[str, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        local_port = int(parts[2].rsplit(":", 1)[1])
        peer_port = int(parts[3].rsplit(":", 1)[1])
        kind = "clients" if local_port == ports["server"] else by_port.get(peer_port)
        if kind is None:
            continue
        for pid in {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids:
            per_pid = counts.setdefault(str(pid), {})
            per_pid[kind] = per_pid.get(kind, 0) + 1
    return counts


class MemorySampler(threading.Thread):
    """Once per interval: VmRSS and PSS of every process under the server, plus the others.

    Every `connections_every` samples also the server processes' TCP connections (clients and
    pooled connections to Redis, MariaDB and the sandbox), if `ports` is given.
    """

    def __init__(
        self,
        server_pid: int,
        others: dict[str, int],
        interval: float = 1.0,
        ports: dict[str, int] | None = None,
        connections_every: int = 2,
    ) -> None:
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.others = others  # name -> pid; the parent may add the load generator later
        self.interval = interval
        self.ports = ports if ports and shutil.which("ss") else None
        self.connections_every = connections_every
        self.samples: list[dict] = []
        self.pids_seen: dict[int, str] = {}
        self.t0 = time.monotonic()
        self._halt = threading.Event()

    def sample(self) -> dict:
        t = time.monotonic() - self.t0
        tree = descendants(self.server_pid)
        per_pid = {pid: status_kb(pid) for pid in tree}
        for pid in tree:
            if pid not in self.pids_seen:
                self.pids_seen[pid] = command_line(pid)
        sample = {
            "t": round(t, 3),
            "server_rss_mb": round(sum(per_pid.values()) / 1024, 2),
            "server_pss_mb": round(sum(pss_kb(pid) for pid in tree) / 1024, 2),
            "server_processes": len(tree),
            "server_rss_by_pid_mb": {str(p): round(kb / 1024, 2) for p, kb in per_pid.items()},
            **{
                f"{name}_rss_mb": round(status_kb(pid) / 1024, 2)
                for name, pid in list(self.others.items())
            },
        }
        if self.ports and len(self.samples) % self.connections_every == 0:
            sample["connections"] = connection_counts(set(tree), self.ports)
        return sample

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._halt.set()
        self.join()


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
        "pss_slope_mb_per_min": _round(linear_slope(pss_window), 2),
        "warm_pss_mb": _round(
            _median([s["server_pss_mb"] for s in loaded if abs(s["t"] - t_warm) <= 1.5]), 1
        ),
        "end_pss_mb": _round(_median([s["server_pss_mb"] for s in loaded[-3:]]), 1),
    }


def window_samples(samples: list[dict], t_stop: float) -> list[dict]:
    return [s for s in samples if t_stop - SLOPE_WINDOW_S <= s["t"] <= t_stop]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def connections_max(samples: list[dict], t_stop: float) -> dict[str, dict[str, int]]:
    """Per server process, the most connections of each kind seen while the load ran."""
    most: dict[str, dict[str, int]] = {}
    for sample in samples:
        if sample["t"] > t_stop:
            continue
        for pid, kinds in sample.get("connections", {}).items():
            mine = most.setdefault(pid, {})
            for kind, n in kinds.items():
                mine[kind] = max(mine.get(kind, 0), n)
    return {pid: kinds for pid, kinds in most.items() if kinds.get("clients")}


def other_growth(samples: list[dict], t_warm: float, t_stop: float) -> dict:
    """RSS after warm-up and at the end for the sandbox, Redis, MariaDB, the load generator."""
    loaded = [s for s in samples if s["t"] <= t_stop]
    names = sorted({k[: -len("_rss_mb")] for s in loaded for k in s if k.endswith("_rss_mb")})
    out = {}
    for name in names:
        if name == "server":
            continue
        key = f"{name}_rss_mb"
        warm = _median([s[key] for s in loaded if key in s and abs(s["t"] - t_warm) <= 1.5])
        end = _median([s[key] for s in loaded[-3:] if key in s])
        out[name] = {"warm_rss_mb": _round(warm, 1), "end_rss_mb": _round(end, 1)}
    return out
