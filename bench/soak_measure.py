"""What the soak measures: its load generator, the server's memory and connections, and what
it reads after the load.

The load generator runs as its own process (`python -m bench.soak --child-loadgen SPEC`):
bench.loadgen's own run() measures a window and then aborts the requests still in flight, whose
SMS the sandbox may still accept. This one counts every answer from the first request on, stops
sending after --duration and waits for every answer in flight. The sampler reads RSS/PSS of the
server's process tree once a second, and its open connections. After the load: the server's
/metrics, its log and the sandbox's inbox.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from bench.loadgen import Generator, Slot, percentile
from bench.stack import descendants

METRIC_RE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
# The mobiles of the soak's tuples: Infrastructure.seed_captchas for cell 0.
SEEDED_PREFIX = "1300"

# ---- the load generator (its own process) -------------------------------------------------


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
        warm = (time.perf_counter(), len(stats.ok_latencies))
        print("warm", flush=True)
        await asyncio.sleep(max(0.0, args.duration - args.warmup))
        self.running = False  # no new request from here on; the ones in flight finish
        stop = (time.perf_counter(), len(stats.ok_latencies))
        print("sending-stopped", flush=True)
        in_flight_left = await self.drain(stop[0])
        end_t = time.perf_counter()
        stats.measuring = False
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        ticker.cancel()
        checker.cancel()
        timeline.append(self.tick(t0))
        for slot in self.slots:
            slot.close()
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        result = self.summary(end_t - t0, cpu)
        result.update(self.soak_summary((t0, warm, stop, end_t), in_flight_left, timeline))
        return result

    async def drain(self, stop_t: float) -> int:
        """Wait for the answers in flight; how many are still missing (0 unless it hung)."""
        while any(slot.started is not None for slot in self.slots):
            if time.perf_counter() - stop_t > self.args.timeout + 2:
                break  # cannot happen while check_timeouts runs; never hang the soak
            await asyncio.sleep(0.01)
        return sum(slot.started is not None for slot in self.slots)

    def soak_summary(self, times: tuple, in_flight_left: int, timeline: list[dict]) -> dict:
        """What the soak adds to bench.loadgen's summary: the steady state, the drain, ticks."""
        t0, (warm_t, warm_ok), (stop_t, stop_ok), end_t = times
        steady = sorted(self.stats.ok_latencies[warm_ok:stop_ok])
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        return {
            "sent": self.stats.sent,
            "tuples_used": min(self.counter, len(self.tuples)),
            "tuples_seeded": len(self.tuples),
            "sending_s": round(stop_t - t0, 3),
            "drain_s": round(end_t - stop_t, 3),
            "in_flight_left": in_flight_left,
            "warmup_s": self.args.warmup,
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


# ---- memory and connections, sampled while the load runs ----------------------------------


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
        warm = median_or_none([s[key] for s in loaded if key in s and abs(s["t"] - t_warm) <= 1.5])
        end = median_or_none([s[key] for s in loaded[-3:] if key in s])
        out[name] = {"warm_rss_mb": round_or_none(warm, 1), "end_rss_mb": round_or_none(end, 1)}
    return out


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def samples_record(samples: list[dict], marks: dict[str, float]) -> dict:
    """The sampler's series, as the results JSON keeps them."""
    warm, stop = marks["warm"], marks["sending-stopped"]
    return {
        "memory_others": other_growth(samples, warm, stop),
        "connections_max": connections_max(samples, stop),
        "connection_samples": [
            {"t": s["t"], **s["connections"]} for s in samples if s.get("connections")
        ],
        "rss_samples": [
            {k: v for k, v in s.items() if k not in ("server_rss_by_pid_mb", "connections")}
            for s in samples
        ],
        "rss_by_pid_samples": [{"t": s["t"], **s["server_rss_by_pid_mb"]} for s in samples],
    }


# ---- after the load: the server's /metrics and log, the sandbox's inbox -------------------


def fetch(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


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


def log_problems(log_text: str) -> list[str]:
    """Anything the server logged above INFO (DBERR's cause is a WARNING), and crashes;
    not the probe's JSON 404s, which are logged at WARNING too."""
    return [
        line
        for line in log_text.splitlines()
        if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback|exited", line)
        and "404 GET JsonNotFoundHandler" not in line
    ]


def inbox_summary(inbox: list[dict]) -> dict:
    mobiles = [m["to"] for m in inbox]
    return {
        "messages": len(inbox),
        "distinct_mobiles": len(set(mobiles)),
        "all_from_seeded_tuples": all(m.startswith(SEEDED_PREFIX) for m in mobiles),
    }
