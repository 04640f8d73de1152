"""Soak test (issue 4, "Load"): .venv/bin/python -m bench.soak

  python -m bench.soak [--connections 500] [--duration 60] [--latency-ms 200] [--processes N]

Starts Redis, MariaDB and the Ronglian sandbox (rate limits off, answering after --latency-ms)
and server.py with every protection on but the rate-limit ceilings out of reach (the same
overrides as bench.run: all load comes from one IP). Seeds one CAPTCHA and one fresh mobile per
possible request, then runs bench.loadgen's generator with --connections keep-alive connections
for --duration seconds, while sampling the resident memory of the server's process tree (every
worker and its CAPTCHA render processes) once a second. Then it checks the issue's criteria:

  errors     no error answer (HTTP error or errno != "0"), no client timeout, no connection error
  accounting OK answers == messages in the sandbox inbox (nothing lost, nothing sent twice)
  memory     server RSS at the end within +10 % of its value after warm-up, and the slope of a
             linear fit over the last 40 s below --max-slope-pct-per-min

Writes bench/results/soak-latest.json, docs/perf/soak_rss.png and the generated section of
docs/LOAD.md; exits 1 if a criterion fails. Takes about 15 s more than --duration.

Every answer is counted, from the first request on: bench.loadgen's own run() measures a window
and then aborts the requests still in flight, whose SMS the sandbox may still accept. Here the
generator stops sending after --duration and waits for every answer in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import report
from bench.loadgen import Generator, Slot, percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "LOAD.md"
PLOT = ROOT / "docs" / "perf" / "soak_rss.png"
BEGIN, END = "<!-- soak:results:begin -->", "<!-- soak:results:end -->"
SLOPE_WINDOW_S = 40


# ---- the load generator (runs as its own process: python -m bench.soak --child-loadgen) -----


class SoakSlot(Slot):
    """bench.loadgen's Slot; a connection made after sending stopped has nothing in flight."""

    def send(self, fresh_connection: bool) -> None:
        if not self.gen.running:
            self.started = None
            return
        super().send(fresh_connection)


class SoakGenerator(Generator):
    """bench.loadgen's Generator, counting every answer instead of a measured window.

    Counts from the first request, stops sending after --duration, then waits for the answers
    still in flight (check_timeouts bounds the wait: an answer older than --timeout is counted
    as a timeout). Marks the end of --warmup for steady-state latency and throughput and
    records a per-second timeline of the counters.
    """

    def tick(self, t0: float) -> dict:
        s = self.stats
        return {
            "t": round(time.perf_counter() - t0, 3),
            "ok": len(s.ok_latencies),
            "error_answers": len(s.bad_latencies),
            "timeouts": s.timeouts,
            "connection_errors": s.conn_errors,
        }

    async def ticker(self, t0: float, timeline: list[dict]) -> None:
        while True:
            await asyncio.sleep(1.0)
            timeline.append(self.tick(t0))

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        args, stats = self.args, self.stats
        stats.measuring = True
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        print("start", flush=True)
        self.slots = [SoakSlot(self, loop) for _ in range(args.connections)]
        for slot in self.slots:
            slot.connect()
        checker = asyncio.create_task(self.check_timeouts())
        timeline: list[dict] = []
        ticker = asyncio.create_task(self.ticker(t0, timeline))
        await asyncio.sleep(args.warmup)
        warm_t, warm_ok = time.perf_counter(), len(stats.ok_latencies)
        print("warm", flush=True)
        await asyncio.sleep(max(0.0, args.duration - args.warmup))
        self.running = False  # no new request from here on; the ones in flight finish
        stop_t, stop_ok = time.perf_counter(), len(stats.ok_latencies)
        print("sending-stopped", flush=True)
        while any(slot.started is not None for slot in self.slots):
            if time.perf_counter() - stop_t > args.timeout + 2:
                break  # cannot happen while check_timeouts runs; never hang the soak
            await asyncio.sleep(0.01)
        end_t = time.perf_counter()
        in_flight_left = sum(slot.started is not None for slot in self.slots)
        stats.measuring = False
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        ticker.cancel()
        checker.cancel()
        timeline.append(self.tick(t0))
        for slot in self.slots:
            slot.close()
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        result = self.summary(end_t - t0, cpu)
        steady = sorted(stats.ok_latencies[warm_ok:stop_ok])
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        result.update(
            {
                "sent": stats.sent,
                "tuples_used": min(self.counter, len(self.tuples)),
                "tuples_seeded": len(self.tuples),
                "sending_s": round(stop_t - t0, 3),
                "drain_s": round(end_t - stop_t, 3),
                "in_flight_left": in_flight_left,
                "warmup_s": args.warmup,
                "steady": {
                    "window_s": round(stop_t - warm_t, 3),
                    "ok": stop_ok - warm_ok,
                    "ok_per_s": round((stop_ok - warm_ok) / (stop_t - warm_t), 1),
                    "p50_ms": ms(percentile(steady, 50)),
                    "p90_ms": ms(percentile(steady, 90)),
                    "p99_ms": ms(percentile(steady, 99)),
                    "max_ms": ms(steady[-1] if steady else None),
                },
                "timeline": timeline,
            }
        )
        return result


def child_main(spec_path: str) -> int:
    """The load generator process: a JSON spec of bench.loadgen's options plus "out"."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = spec.pop("out")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(SoakGenerator(argparse.Namespace(**spec)).run())
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ---- memory sampling --------------------------------------------------------------------------


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A kB value from /proc/<pid>/status (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split among their users), 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


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
        from bench.stack import descendants

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


# ---- the run ------------------------------------------------------------------------------


def seed_count(args: argparse.Namespace) -> int:
    """Tuples for every request the run can possibly make.

    A closed loop of N connections whose every request waits L ms upstream completes at most
    N / L requests per second, so N / L x (duration + 2 s) tuples can never run out. Without
    latency bench.run's sizing (3,500 req/s) is used.
    """
    from bench.run import DEFAULT_SEED_RATE

    rate = args.connections * 1000 / args.latency_ms if args.latency_ms else DEFAULT_SEED_RATE
    return math.ceil(rate * (args.duration + 2)) + args.connections


def fetch(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


METRIC_RE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")


def server_counters(port: int) -> dict:
    """GET /metrics (all workers summed): SMS sends by status, sms_codes answers by errno."""
    text = fetch(f"http://127.0.0.1:{port}/metrics").decode()
    sends: dict[str, float] = {}
    answers: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_RE.match(line.strip())
        if not match:
            continue
        name, labels, value = match.groups()
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "smsreg_sms_sends_total":
            sends[label.get("status_code", "?")] = float(value)
        elif name == "smsreg_requests_total" and label.get("route") == "sms_codes":
            errno = label.get("errno", "?")
            answers[errno] = answers.get(errno, 0) + float(value)
    return {
        "sms_sends_by_status": {k: int(v) for k, v in sends.items() if v},
        "sms_codes_answers_by_errno": {k: int(v) for k, v in answers.items() if v},
    }


def soak(args: argparse.Namespace, workdir: Path) -> dict:
    from bench.run import COOKIE, TRIVIAL_PATH, Run, limit_overrides, processes
    from bench.stack import (
        Proc,
        Sandbox,
        cpu_seconds,
        machine_busy,
        tree_cpu_seconds,
        wait_quiet,
    )
    from devstack.processes import MariaDBServer, RedisServer, free_port

    run = Run(args, workdir)
    count = seed_count(args)
    info: dict = {}
    try:
        # Run.start_infrastructure, except that the sandbox's inbox may hold every message the
        # run can produce (its default keeps the newest 100,000): nothing can fall off.
        run.redis = RedisServer(workdir / "redis").start()
        run.mariadb = MariaDBServer(workdir / "mariadb").start()
        run.sandbox = Sandbox.create(workdir)
        inbox_limit = max(100_000, count + 1000)
        (workdir / "sandbox.json").write_text(
            json.dumps({"rate_limits": False, "inbox_limit": inbox_limit})
        )
        run.sandbox.start()
        run.prepare_database()
        import redis

        run.redis_client = redis.Redis(port=run.redis.port, decode_responses=True)
        t = time.monotonic()
        tuples = run.seed_captchas(count, "soak")
        print(f"seeded {count} CAPTCHAs in {time.monotonic() - t:.1f} s", flush=True)

        env = {
            "SMSREG_REDIS_URL": run.redis.url,
            "SMSREG_MYSQL_PORT": str(run.mariadb.port),
            "SMSREG_RONGLIAN_BASE_URL": run.sandbox.base_url,
            "SMSREG_RONGLIAN_MAX_CLIENTS": str(args.max_clients),
            **limit_overrides(),
            **(processes(args.processes) if args.processes is not None else {}),
            # prometheus_client's per-worker files, removed with the work directory
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            **dict(pair.split("=", 1) for pair in args.server_env),
        }
        port = free_port()
        server = Proc(
            "server",
            [sys.executable, "server.py", "--port", str(port)],
            workdir / "server.log",
            env=env,
            port=port,
        ).start()
        run.systems["server"] = {"proc": server}
        wait_quiet(port, TRIVIAL_PATH)
        time.sleep(2)  # the workers' CAPTCHA pools fill at start; let that settle
        run.sandbox.set_latency(args.latency_ms)
        info["server_env"] = {k: v for k, v in env.items() if k.startswith("SMSREG_")}
        info["server_config"] = effective_config(info["server_env"])
        info["sandbox_config"] = {"rate_limits": False, "inbox_limit": inbox_limit}
        info["seeded"] = count

        others = {
            "sandbox": run.sandbox.pid,
            "redis": run.redis.process.pid,
            "mariadb": run.mariadb.process.pid,
        }
        ports = {
            "server": port,
            "redis": run.redis.port,
            "mariadb": run.mariadb.port,
            "sandbox": run.sandbox.port,
        }
        sampler = MemorySampler(server.pid, others, ports=ports)
        spec = {
            "url": f"http://127.0.0.1:{port}",
            "mode": "sms",
            "connections": args.connections,
            "warmup": args.warmup,
            "duration": args.duration,
            "timeout": args.client_timeout,
            "tuples": str(tuples),
            "prefix": "soak",
            "cookie": COOKIE,
            "out": str(workdir / "loadgen.json"),
        }
        (workdir / "loadgen-spec.json").write_text(json.dumps(spec))
        probe_out = workdir / "probe.json"
        watched = {
            "server": lambda: tree_cpu_seconds(server.pid),
            "sandbox": lambda: cpu_seconds(run.sandbox.pid),
            "redis": lambda: cpu_seconds(run.redis.process.pid),
            "mariadb": lambda: cpu_seconds(run.mariadb.process.pid),
        }
        sampler.start()
        probe = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.probe",
                "--url",
                f"http://127.0.0.1:{port}{TRIVIAL_PATH}",
                "--warmup",
                str(args.warmup),
                "--duration",
                str(args.duration - args.warmup),
                "--cookie",
                COOKIE,
                "--out",
                str(probe_out),
            ],
            cwd=ROOT,
        )
        loadgen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.soak",
                "--child-loadgen",
                str(workdir / "loadgen-spec.json"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        sampler.others["loadgen"] = loadgen.pid
        marks: dict[str, float] = {}
        snaps: dict[str, tuple[dict, tuple[float, float]]] = {}
        assert loadgen.stdout is not None
        for line in loadgen.stdout:
            mark = line.strip()
            if mark in ("start", "warm", "sending-stopped"):
                marks[mark] = time.monotonic() - sampler.t0
                snaps[mark] = ({k: f() for k, f in watched.items()}, machine_busy())
                print(f"  {mark} at {marks[mark]:.1f} s", flush=True)
        loadgen.wait()
        probe.wait()
        time.sleep(args.idle_tail)  # a few samples of the idle server after the load
        sampler.stop()
        if loadgen.returncode != 0:
            raise RuntimeError(f"load generator exited with {loadgen.returncode}")

        drained = wait_quiet(port, TRIVIAL_PATH)
        load = json.loads((workdir / "loadgen.json").read_text())
        lag = json.loads(probe_out.read_text())
        inbox = run.sandbox.control("GET", "/inbox")
        counters = server_counters(port)
        # Anything the server logged above INFO (DBERR's cause is a WARNING), and crashes;
        # not the probe's JSON 404s, which are logged at WARNING too.
        worker_log_problems = [
            line
            for line in server.tail(10**9).splitlines()
            if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback|exited", line)
            and "404 GET JsonNotFoundHandler" not in line
        ]
    finally:
        run.stop()

    # ---- CPU, as bench.run reports it: the steady window (after warm-up) --------------------
    def cpu_split(a: str, b: str, loadgen_pct: float) -> dict:
        (ca, ba), (cb, bb) = snaps[a], snaps[b]
        elapsed = marks[b] - marks[a]
        cpu = {k: round(100 * (cb[k] - ca[k]) / elapsed, 1) for k in ca}
        cpu["loadgen"] = loadgen_pct
        cpu["machine_busy_of_200"] = round(200 * (bb[0] - ba[0]) / max(1, bb[1] - ba[1]), 1)
        cpu["others"] = round(
            max(
                0.0,
                cpu["machine_busy_of_200"]
                - sum(v for k, v in cpu.items() if k in (*ca, "loadgen")),
            ),
            1,
        )
        return cpu

    cpu = cpu_split("warm", "sending-stopped", load["loadgen_cpu_pct"])
    steady_ok = load["steady"]["ok"]
    server_cpu_s = snaps["sending-stopped"][0]["server"] - snaps["warm"][0]["server"]

    # ---- the criteria -------------------------------------------------------------------------
    mobiles = [m["to"] for m in inbox]
    distinct = len(set(mobiles))
    seeded_prefix_ok = all(m.startswith("1300") for m in mobiles)
    errors_ok = (
        load["errors"] == 0
        and not load["exhausted"]
        and load["in_flight_left"] == 0
        and load["sent"] == load["ok"]
    )
    accounting_ok = (
        load["ok"] == len(inbox)
        and distinct == len(inbox)
        and len(inbox) < info["sandbox_config"]["inbox_limit"]
    )
    memory = memory_verdict(sampler.samples, marks["warm"], marks["sending-stopped"], args)
    return {
        **info,
        "marks_s": {k: round(v, 3) for k, v in marks.items()},
        "load": {k: v for k, v in load.items() if k != "timeline"},
        "timeline": load["timeline"],
        "lag": lag,
        "cpu_pct": cpu,
        "server_cpu_us_per_ok": round(1e6 * server_cpu_s / steady_ok) if steady_ok else None,
        "inbox": {
            "messages": len(inbox),
            "distinct_mobiles": distinct,
            "all_from_seeded_tuples": seeded_prefix_ok,
        },
        "server_counters": counters,
        "server_log_problems": {
            "count": len(worker_log_problems),
            "first": worker_log_problems[:20],
        },
        "drain_wait_s": round(drained, 1),
        "server_processes": {str(p): c for p, c in sampler.pids_seen.items()},
        "memory": memory,
        "memory_others": other_growth(sampler.samples, marks["warm"], marks["sending-stopped"]),
        "connections_max": connections_max(sampler.samples, marks["sending-stopped"]),
        "connection_samples": [
            {"t": s["t"], **s["connections"]} for s in sampler.samples if s.get("connections")
        ],
        "rss_samples": [
            {k: v for k, v in s.items() if k not in ("server_rss_by_pid_mb", "connections")}
            for s in sampler.samples
        ],
        "rss_by_pid_samples": [{"t": s["t"], **s["server_rss_by_pid_mb"]} for s in sampler.samples],
        "criteria": {
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
                "inbox_messages": len(inbox),
                "distinct_mobiles_in_inbox": distinct,
                "server_sends_000000": counters["sms_sends_by_status"].get("000000"),
            },
            "memory": {"pass": memory["pass"]},
        },
    }


# ---- report -------------------------------------------------------------------------------


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = results["marks_s"]
    t0 = marks["start"]
    samples = results["rss_samples"]
    xs = [s["t"] - t0 for s in samples]
    mem = results["memory"]
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
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
    tl = results["timeline"]
    prev = {"t": 0.0, "ok": 0}
    rate_x, rate_y = [], []
    for point in tl:
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
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render_markdown(results: dict) -> str:
    load, steady, mem = results["load"], results["load"]["steady"], results["memory"]
    crit, cpu, m = results["criteria"], results["cpu_pct"], results["machine"]
    acc = crit["accounting"]
    limits = pool_limits(results)
    workers = sum(
        1 for c in results["server_processes"].values() if "server.py" in c
    )  # master + workers
    lines = [
        f"Run of {results['generated']} (commit {m['commit']}, {m['cpus']} × {m['cpu_model']}, "
        f"Python {m['python']}), {results['wall_s']} s wall time:",
        "",
        f"    {results['command']}",
        "",
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
        "",
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
        f"| event-loop lag probe p50 / p99 / max (after warm-up) | {results['lag']['p50_ms']} / "
        f"{results['lag']['p99_ms']} / {results['lag']['max_ms']} ms "
        f"({results['lag']['errors']} errors) |",
        f"| server CPU per OK answer | {results['server_cpu_us_per_ok']} µs |",
        f"| server log lines above INFO | {results['server_log_problems']['count']} |",
        f"| server RSS peak / PSS after warm-up → end | {mem.get('peak_rss_mb')} MB / "
        f"{mem.get('warm_pss_mb')} → {mem.get('end_pss_mb')} MB "
        f"(PSS slope {mem.get('pss_slope_mb_per_min')} MB/min) |",
        "",
        "CPU after warm-up, % of one core (the machine has 200 %):",
        "",
        "| server | sandbox | Redis | MariaDB | load generator | others | machine busy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {cpu['server']} | {cpu['sandbox']} | {cpu['redis']} | {cpu['mariadb']} | "
        f"{cpu['loadgen']} | {cpu['others']} | {cpu['machine_busy_of_200']} |",
        "",
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending")
    parser.add_argument("--latency-ms", type=int, default=200, help="sandbox answer latency")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="server worker processes (default: the server's own, one per core)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=10,
        help="seconds at the start excluded from the memory baseline and steady-state numbers",
    )
    parser.add_argument(
        "--client-timeout", type=float, default=5, help="seconds before a client gives up"
    )
    parser.add_argument(
        "--max-clients", type=int, default=256, help="sends in flight to Ronglian per process"
    )
    parser.add_argument("--max-growth-pct", type=float, default=10.0)
    parser.add_argument(
        "--max-slope-pct-per-min",
        type=float,
        default=1.0,
        help="limit on the fitted RSS slope over the last 40 s, in %% of the warm RSS per minute",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="SMSREG_X=V",
        help="extra setting for server.py (repeatable), e.g. a smaller pool to investigate",
    )
    parser.add_argument("--idle-tail", type=float, default=5, help="seconds sampled after load")
    parser.add_argument("--out", default=str(RESULTS / "soak-latest.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/LOAD.md")
    parser.add_argument("--child-loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup + SLOPE_WINDOW_S > args.duration and not args.child_loadgen:
        parser.error(f"--duration must be at least --warmup + {SLOPE_WINDOW_S} s")
    return args


def other_benchmarks() -> list[str]:
    """Command lines of other bench.run / bench.soak processes (they would share the CPUs)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (os.getpid(), os.getppid()):
            cmd = command_line(int(entry))
            if re.search(r"-m bench\.(run|soak)\b", cmd) and "--child-loadgen" not in cmd:
                found.append(f"{entry}: {cmd}")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_loadgen:
        return child_main(args.child_loadgen)

    from bench.run import ensure_dependencies

    for other in other_benchmarks():
        print(f"WARNING: another benchmark shares this machine: {other}", flush=True)
    ensure_dependencies()
    workdir = Path(tempfile.mkdtemp(prefix="smsreg-soak-"))
    started = time.time()
    try:
        body = soak(args, workdir)
    except BaseException:
        print(f"work directory kept: {workdir}", file=sys.stderr)
        raise
    results = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python -m bench.soak", *(argv or sys.argv[1:])]),
        "wall_s": round(time.time() - started),
        "machine": report.machine_info(),
        "latency_ms": args.latency_ms,
        "processes_label": (
            f"{args.processes} (--processes)"
            if args.processes is not None
            else f"server default (one per core: {os.cpu_count()})"
        ),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("child_loadgen", "out", "no_docs")
        },
        **body,
    }
    passed = all(c["pass"] for c in results["criteria"].values())
    results["pass"] = passed
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {out}")
    if not args.no_docs:
        write_docs(results)
    load, mem = results["load"], results["memory"]
    print(
        f"ok={load['ok']} sent={load['sent']} errors={load['errors']} "
        f"inbox={results['inbox']['messages']} ok/s={load['ok_per_s']} "
        f"p50={load['steady']['p50_ms']} p99={load['steady']['p99_ms']} "
        f"rss {mem.get('warm_rss_mb')}->{mem.get('end_rss_mb')} MB "
        f"slope={mem.get('slope_mb_per_min')} MB/min cpu={results['cpu_pct']}"
    )
    for name, criterion in results["criteria"].items():
        print(f"  {name:10} {'PASS' if criterion['pass'] else 'FAIL'}")
    if args.keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
