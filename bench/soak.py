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

Three modules: this one runs the soak; bench/soak_measure.py is what it measures (the load
generator, which counts every answer from the first request on and says why, the memory
sampler, the readings after the load); bench/soak_report.py is what it concludes (the
criteria, the plot and the docs section).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report, soak_measure, soak_report
from bench.cell import COOKIE, DEFAULT_SEED_RATE, TRIVIAL_PATH, start_probe
from bench.run import add_common_options, ensure_dependencies, save_results
from bench.soak_measure import MemorySampler, child_main, command_line, samples_record
from bench.soak_report import SLOPE_WINDOW_S, memory_verdict
from bench.stack import ROOT, CpuMeter, CpuSnapshot, Infrastructure, Proc, wait_quiet
from bench.systems import ours_env, processes
from devstack.processes import free_port

RESULTS = ROOT / "bench" / "results"
MARKS = ("start", "warm", "sending-stopped")


def seed_count(args: argparse.Namespace) -> int:
    """Tuples for every request the run can possibly make.

    A closed loop of N connections whose every request waits L ms upstream completes at most
    N / L requests per second, so N / L x (duration + 2 s) tuples can never run out. Without
    latency bench.run's sizing (3,500 req/s) is used.
    """
    rate = args.connections * 1000 / args.latency_ms if args.latency_ms else DEFAULT_SEED_RATE
    return math.ceil(rate * (args.duration + 2)) + args.connections


def start_server(args: argparse.Namespace, infra: Infrastructure, workdir: Path) -> Proc:
    """server.py with every protection on, the limits' ceilings out of reach."""
    env = {
        **ours_env(infra, args.max_clients),
        **(processes(args.processes) if args.processes is not None else {}),
        # prometheus_client's per-worker files, removed with the work directory
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        **dict(pair.split("=", 1) for pair in args.server_env),
    }
    port = free_port()
    args_ = [sys.executable, "server.py", "--port", str(port)]
    server = Proc("server", args_, workdir / "server.log", port=port, env=env).start()
    wait_quiet(port, TRIVIAL_PATH)
    time.sleep(2)  # the workers' CAPTCHA pools fill at start; let that settle
    return server


def drive_load(
    args: argparse.Namespace,
    infra: Infrastructure,
    server: Proc,
    sampler: MemorySampler,
    tuples: Path,
) -> tuple[dict[str, float], dict[str, CpuSnapshot]]:
    """The load generator and the lag probe, sampled throughout; marks and CPU at each mark."""
    workdir = infra.workdir
    spec = {
        "url": f"http://127.0.0.1:{server.port}",
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
    meter = CpuMeter(server.pid, infra)
    sampler.start()
    probe_out = workdir / "probe.json"
    probe = start_probe(server.port, args.warmup, args.duration - args.warmup, probe_out)
    loadgen = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--child-loadgen", str(workdir / "loadgen-spec.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler.others["loadgen"] = loadgen.pid
    marks: dict[str, float] = {}
    snaps: dict[str, CpuSnapshot] = {}
    assert loadgen.stdout is not None
    for line in loadgen.stdout:
        mark = line.strip()
        if mark in MARKS:
            marks[mark] = time.monotonic() - sampler.t0
            snaps[mark] = meter.snapshot()
            print(f"  {mark} at {marks[mark]:.1f} s", flush=True)
    loadgen.wait()
    probe.wait()
    time.sleep(args.idle_tail)  # a few samples of the idle server after the load
    sampler.stop()
    if loadgen.returncode != 0:
        raise RuntimeError(f"load generator exited with {loadgen.returncode}")
    return marks, snaps


def soak(args: argparse.Namespace, workdir: Path) -> dict:
    count = seed_count(args)
    # The sandbox's inbox may hold every message the run can produce (its default keeps the
    # newest 100,000): nothing can fall off.
    infra = Infrastructure(workdir, inbox_limit=max(100_000, count + 1000))
    server = None
    try:
        infra.start()
        t = time.monotonic()
        tuples = infra.seed_captchas(count, workdir / "tuples-soak.txt", 0)
        print(f"seeded {count} CAPTCHAs in {time.monotonic() - t:.1f} s", flush=True)
        server = start_server(args, infra, workdir)
        infra.sandbox.set_latency(args.latency_ms)
        server_env = {k: v for k, v in server.env.items() if k.startswith("SMSREG_")}
        info = {
            "server_env": server_env,
            "server_config": soak_report.effective_config(server_env),
            "sandbox_config": {"rate_limits": False, "inbox_limit": infra.inbox_limit},
            "seeded": count,
        }
        ports = {"server": server.port, **{n: p.port for n, p in infra.servers().items()}}
        sampler = MemorySampler(server.pid, infra.pids(), ports=ports)
        marks, snaps = drive_load(args, infra, server, sampler, tuples)
        drained = wait_quiet(server.port, TRIVIAL_PATH)
        load = json.loads((workdir / "loadgen.json").read_text())
        lag = json.loads((workdir / "probe.json").read_text())
        inbox = soak_measure.inbox_summary(infra.sandbox.control("GET", "/inbox"))
        counters = soak_measure.server_counters(server.port)
        problems = soak_measure.log_problems(server.tail(10**9))
    finally:
        if server is not None:
            server.stop()
        infra.stop()
    cpu = CpuMeter.percent(snaps["warm"], snaps["sending-stopped"], load["loadgen_cpu_pct"])
    steady_ok = load["steady"]["ok"]
    server_cpu_s = snaps["sending-stopped"].cpu_s["server"] - snaps["warm"].cpu_s["server"]
    memory = memory_verdict(sampler.samples, marks["warm"], marks["sending-stopped"], args)
    return {
        **info,
        "marks_s": {k: round(v, 3) for k, v in marks.items()},
        "load": {k: v for k, v in load.items() if k != "timeline"},
        "timeline": load["timeline"],
        "lag": lag,
        "cpu_pct": cpu,
        "server_cpu_us_per_ok": round(1e6 * server_cpu_s / steady_ok) if steady_ok else None,
        "inbox": inbox,
        "server_counters": counters,
        "server_log_problems": {"count": len(problems), "first": problems[:20]},
        "drain_wait_s": round(drained, 1),
        "server_processes": {str(p): c for p, c in sampler.pids_seen.items()},
        "memory": memory,
        **samples_record(sampler.samples, marks),
        "criteria": soak_report.criteria(load, inbox, counters, memory, infra.inbox_limit),
    }


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
        "--max-clients",
        type=int,
        default=512,
        help="sends in flight to Ronglian per process; also the admission limit, so at least "
        "--connections: the soak checks that every request is served, none shed",
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
    add_common_options(parser, RESULTS / "soak-latest.json", "docs/LOAD.md")
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
    save_results(results, args, soak_report.write_docs)
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
