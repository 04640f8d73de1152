"""One cell of the benchmark: bench.loadgen and the lag probe against one system, and the CPU
of every process during the measured window."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench import halfdone
from bench.stack import ROOT, CpuMeter, CpuSnapshot, Infrastructure, cell_prefix, wait_quiet
from bench.systems import System

# A browser that loaded the page holds the csrf_token cookie; sent to every system alike.
COOKIE = "csrf_token=2|bench|0000000000000000|1700000000"
TRIVIAL_PATH = "/api/v1.0/nothing"
# Requests a system can complete per second at most, for sizing the pre-seeded CAPTCHAs.
SEED_RATE = {"b": 1500}
DEFAULT_SEED_RATE = 3500
# What a client of these SMS cells does after a 503.
OVERLOAD_SECTIONS = {"overload": ["--honor-retry-after"], "retry": ["--retry-at-once"]}


def loadgen_command(port: int, section: str, connections: int, args: argparse.Namespace) -> list:
    """bench.loadgen's command line, without its data (--tuples or --prefix) and --out.

    The overload cells are SMS cells whose clients wait a 503's Retry-After, as the SMS
    widget does, and then repeat the shed request; the retry cells' clients repeat it at once,
    ignoring Retry-After (issue 26). Both keep a ledger for bench/halfdone.py.
    """
    command = [
        sys.executable, "-m", "bench.loadgen",
        "--url", f"http://127.0.0.1:{port}",
        "--mode", "sms" if section in OVERLOAD_SECTIONS else section,
        "--connections", str(connections),
        "--warmup", str(args.warmup),
        "--duration", str(args.duration),
        "--timeout", str(args.client_timeout),
        "--cookie", COOKIE,
    ]  # fmt: skip
    return [*command, *OVERLOAD_SECTIONS.get(section, [])]


def start_probe(port: int, warmup: float, duration: float, out: Path) -> subprocess.Popen:
    """bench.probe: a trivial request every 20 ms after `warmup` s, for `duration` s."""
    command = [
        sys.executable, "-m", "bench.probe",
        "--url", f"http://127.0.0.1:{port}{TRIVIAL_PATH}",
        "--warmup", str(warmup),
        "--duration", str(duration),
        "--cookie", COOKIE,
        "--out", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT)


def start_profiler(pid: int, duration: float, output: Path) -> subprocess.Popen:
    """py-spy on `pid` for the measured window, raw (collapsed) stacks into `output`."""
    command = [
        str(Path(sys.executable).parent / "py-spy"), "record",
        "--pid", str(pid),
        "--rate", "200",
        "--duration", str(int(duration) - 1),
        "--format", "raw",
        "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measured_window(
    loadgen: subprocess.Popen, meter: CpuMeter, on_start: Callable[[], None]
) -> tuple[CpuSnapshot, CpuSnapshot]:
    """CPU snapshots at the load generator's measure-start and measure-end lines."""
    assert loadgen.stdout is not None
    before = after = None
    for line in loadgen.stdout:
        if line.strip() == "measure-start":
            before = meter.snapshot()
            on_start()
        elif line.strip() == "measure-end":
            after = meter.snapshot()
    loadgen.wait()
    if before is None or after is None:
        raise RuntimeError(f"load generator exited with {loadgen.returncode} before measuring")
    return before, after


def measure(
    infra: Infrastructure,
    system: System,
    args: argparse.Namespace,
    cell: tuple[str, int, int | None, int],
    workdir: Path,
    profile: Path | None = None,
) -> dict:
    """Run cell (section, connections, latency_ms, index) against system; its record."""
    section, connections, latency_ms, index = cell
    proc = system.proc
    tag = f"{section}-{system.name}-{latency_ms}-{connections}"
    drained = wait_quiet(proc.port, TRIVIAL_PATH)
    infra.reset_redis()
    infra.sandbox.clear_inbox()
    out, probe_out = workdir / f"{tag}.json", workdir / f"{tag}-probe.json"
    command = [*loadgen_command(proc.port, section, connections, args), "--out", str(out)]
    ledger = workdir / f"{tag}-ledger.json" if section in OVERLOAD_SECTIONS else None
    if section == "sms" or ledger:
        count = int(
            SEED_RATE.get(system.name, DEFAULT_SEED_RATE) * (args.warmup + args.duration + 1)
        )
        tuples = infra.seed_captchas(count, workdir / f"tuples-{tag}.txt", index)
        command += ["--tuples", str(tuples)]
        if ledger:
            command += ["--ledger", str(ledger)]
    else:
        command += ["--prefix", f"cap{index}"]
    probe = start_probe(proc.port, args.warmup, args.duration, probe_out)
    loadgen = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    profilers: list[subprocess.Popen] = []

    def start_profiling() -> None:
        if profile is not None:
            profilers.append(start_profiler(proc.pid, args.duration, profile))

    before, after = measured_window(loadgen, CpuMeter(proc.pid, infra), start_profiling)
    probe.wait()
    for profiler in profilers:
        profiler.wait()
    result = json.loads(out.read_text())
    lag = json.loads(probe_out.read_text())
    cpu = CpuMeter.percent(before, after, result.pop("loadgen_cpu_pct"))
    result.pop("loadgen_cpu_s")
    server_cpu_s = after.cpu_s["server"] - before.cpu_s["server"]
    record = {
        "section": section,
        "system": system.name,
        "label": system.label,
        "latency_ms": latency_ms,
        **result,
        "lag": lag,
        "cpu_pct": cpu,
        "ok_per_server_cpu_s": round(result["ok"] / server_cpu_s, 1) if server_cpu_s else None,
        "server_cpu_us_per_ok": round(1e6 * server_cpu_s / result["ok"]) if result["ok"] else None,
        "drain_wait_s": round(drained, 1),
    }
    if ledger:
        record["half_done"] = halfdone.check(infra, ledger, cell_prefix(index))
    print_cell(record, tag)
    return record


def print_cell(cell: dict, tag: str) -> None:
    print(
        f"{cell['section']:8} {cell['system']:8} lat={cell['latency_ms']!s:>4} "
        f"c={cell['connections']:<4} ok/s={cell['ok_per_s']:>7} p50={cell['p50_ms']} "
        f"p99={cell['p99_ms']} err={cell['errors']} to={cell['timeouts']} "
        f"shed={cell.get('shed_share')} shed99={cell.get('shed_p99_ms')} "
        f"lag99={cell['lag']['p99_ms']} cpu={cell['cpu_pct']}",
        flush=True,
    )
    if "half_done" in cell:
        print(f"  {json.dumps(cell['half_done'])}", flush=True)
    if cell["exhausted"]:
        print(f"  WARNING: {tag} ran out of pre-seeded CAPTCHAs", flush=True)
