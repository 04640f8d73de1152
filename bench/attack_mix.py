"""make bench-attack: one SMS-pumping mix, at one rate, against ours, (c+) and (b) (issue 26
goal 3: cheapest per real registration under attack).

    python -m bench.attack_mix [--real-seconds 60] [--attacks 2400,9600] [--legit-users 200]
                               [--systems ours,c+,b] [--quick] [--no-docs] [--keep]

Starts Redis, MariaDB (ih_user_profile with 20,000 users), the Ronglian sandbox (100 ms) and
the three systems, then runs bench/fraud_sim.py's simulated hour against each in turn, on a
fresh Redis and inbox and without the users the previous system registered:

- pumping bots: `--attacks` SMS requests per simulated hour from 2,000 addresses in 40 IPv4
  /24s and 10 IPv6 /64s, to numbers in 5 blocks; each solves its CAPTCHA (the answer read from
  Redis) and every proof of work it is asked for (two processes at nice 19), and never
  registers;
- legitimate users: `--legit-users` per simulated hour, over 200 blocks, 5 % behind the bots'
  busiest /24s; each solves the CAPTCHA (and a proof of work if asked), waits 10-60 simulated
  seconds, reads its code from the sandbox's inbox and registers (POST /api/v1.0/users); a
  503 with Retry-After is repeated after it, up to 3 times, as the page does.

The hour is compressed into --real-seconds; ours gets the same compression of its resend
interval (bench/fraud_sim.py's server_overrides) and believes the simulator's X-Forwarded-For
(it is the trusted proxy). Everything else of ours is config.yml as shipped: fraud guard,
limits, the hourly budget, admission; one process, as (c+). The peers never look at a client's
address, so the bots' rotation neither helps nor hurts them; they get the same header.

A run ends when every client is done, or at the end of the window plus the users' longest
wait plus 10 s: a user not registered by then counts as not registered. Writes
bench/results/attack-mix.json, docs/attack-mix.png and the generated part of
docs/PERFORMANCE.md's "Under attack" section.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import redis.asyncio as aioredis

from bench import attack_report
from bench.fraud_sim import SimConfig, Simulation, server_overrides
from bench.halfdone import wait_drained
from bench.stack import ROOT, CpuMeter, Infrastructure, wait_quiet
from bench.systems import System, start_flask, start_naive, start_ours

RESULTS = ROOT / "bench" / "results" / "attack-mix.json"
UPSTREAM_MS = 100
GRACE_S = 10.0
LEGIT_REPEATS_503 = 3  # a user told 503 + Retry-After waits and repeats, as the page does
LABELS = {
    "ours": "ours: server.py, 1 process, config.yml as shipped",
    "c+": "(c+) naive Tornado handler, curl + uvloop",
    "b": "(b) the tutorials' Flask design, gunicorn 4 sync workers",
}


def shipped_config():
    from services.config.loading import load_config

    return load_config(ROOT / "config.yml", environ={})


def sms_price() -> float:
    """Yuan one code costs through Ronglian: config.yml's costs.* and its billed parts."""
    from services.codes.costs import SmsPricing
    from services.providers.base import Channel

    config = shipped_config()
    pricing = SmsPricing(
        config.costs,
        aliyun_sign=config.aliyun.sign_name,
        webotp_domain=config.sms.webotp_domain,
        ttl_minutes=max(1, config.sms.code_ttl // 60),
    )
    return pricing.send_cost("ronglian", Channel.SMS)


def ours_env(infra: Infrastructure, cfg: SimConfig) -> dict[str, str]:
    assert infra.redis and infra.mariadb and infra.sandbox
    env = {
        "SMSREG_REDIS_URL": infra.redis.url,
        "SMSREG_MYSQL_PORT": str(infra.mariadb.port),
        "SMSREG_RONGLIAN_BASE_URL": infra.sandbox.base_url,
        "SMSREG_PROVIDERS": "ronglian",  # the peers have one provider
        "SMSREG_SECURITY_TRUSTED_PROXIES": "127.0.0.1",  # the simulator speaks for its clients
        "SMSREG_SERVER_PROCESSES": "1",
    }
    for section, values in server_overrides(cfg).items():
        for key, value in values.items():
            env[f"SMSREG_{section.upper()}_{key.upper()}"] = str(value)
    return env


def start(name: str, infra: Infrastructure, cfg: SimConfig, workdir: Path) -> System:
    if name == "ours":
        return start_ours("ours", LABELS["ours"], ours_env(infra, cfg), ROOT, workdir)
    if name == "c+":
        return start_naive("c+", infra, workdir, 256)
    return start_flask(infra, workdir)


def forget_registrations(infra: Infrastructure, baseline_id: int) -> None:
    """Delete the users a previous run registered (ids above the prepared table's), once its
    registrations still in flight (a run cut at its deadline) have landed."""
    last, steady_since, start = max_user_id(infra), time.monotonic(), time.monotonic()
    while time.monotonic() - steady_since < 3 and time.monotonic() - start < 60:
        time.sleep(0.5)
        if (now := max_user_id(infra)) != last:
            last, steady_since = now, time.monotonic()
    conn = infra.mysql()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM ih_user_consent WHERE user_id > %s", (baseline_id,))
        cur.execute("DELETE FROM ih_user_profile WHERE id > %s", (baseline_id,))
    conn.close()


def max_user_id(infra: Infrastructure) -> int:
    conn = infra.mysql()
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM ih_user_profile")
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def separate_bot_cpu(sim: Simulation) -> None:
    """The bots' proofs of work in two processes at the lowest priority, not two threads.

    In threads they held the simulator's GIL and slowed its event loop, which times every
    client, in ours' runs only (the peers never ask for a proof of work); and a real attacker's
    CPU is not the server's. At nice 19 they get the CPU the machine leaves idle.
    """
    sim.bot_cpu.shutdown()
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(2, context, initializer=os.nice, initargs=(19,))
    sim.bot_cpu = pool  # type: ignore[assignment]


async def simulate(sim: Simulation, deadline_s: float) -> bool:
    """sim.run() cut at deadline_s; whether every client was done by then."""
    try:
        await asyncio.wait_for(sim.run(), deadline_s)
        return True
    except TimeoutError:
        sim.http.close()
        sim.bot_cpu.shutdown(wait=False, cancel_futures=True)
        sim.user_cpu.shutdown(wait=False, cancel_futures=True)
        return False


def percentile(values: list[float], p: float) -> float | None:
    from bench.loadgen import percentile as nearest_rank

    return nearest_rank(sorted(values), p)


async def one_run(infra: Infrastructure, system: System, cfg: SimConfig, price: float) -> dict:
    assert infra.redis and infra.sandbox
    wait_quiet(system.proc.port, "/api/v1.0/nothing")
    infra.redis_client.flushdb()  # with the users deleted above: the set of registered numbers too
    infra.sandbox.clear_inbox()
    redis = aioredis.Redis.from_url(infra.redis.url, decode_responses=True)
    budget = shipped_config().limits.sms_global_per_hour
    sim = Simulation(
        cfg, f"http://127.0.0.1:{system.proc.port}", redis, infra.sandbox.base_url, budget
    )
    separate_bot_cpu(sim)
    meter = CpuMeter(system.proc.pid, infra)
    load_before, usage0 = os.getloadavg(), resource.getrusage(resource.RUSAGE_SELF)
    before, started = meter.snapshot(), time.monotonic()
    deadline = cfg.real_seconds + cfg.verify_within / cfg.factor + GRACE_S
    try:
        finished = await simulate(sim, deadline)
    finally:
        await redis.aclose()
    after, elapsed = meter.snapshot(), time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    client_s = sum(getattr(usage1, f) - getattr(usage0, f) for f in ("ru_utime", "ru_stime"))
    cpu = CpuMeter.percent(before, after, round(100 * client_s / elapsed, 1))
    inbox = wait_drained(infra)
    bot_blocks = set(sim.population.attacker_blocks)
    bot_sms = sum(str(m["to"])[:7] in bot_blocks for m in inbox)
    r = sim.result
    registered = r.legit_registered
    server_cpu_s = after.cpu_s["server"] - before.cpu_s["server"]
    record = {
        "system": system.name,
        "label": LABELS[system.name],
        "attacks_per_hour": cfg.attack_attempts,
        "legit_per_hour": cfg.legit_users,
        "window_s": cfg.real_seconds,
        "elapsed_s": round(elapsed, 1),
        "finished": finished,
        "legit_users": r.legit_users,
        "legit_registered": registered,
        "legit_per_s": round(registered / cfg.real_seconds, 2),
        "legit_p50_ms": _ms(percentile(r.legit_waits, 50)),
        "legit_p99_ms": _ms(percentile(r.legit_waits, 99)),
        "legit_failures": dict(r.legit_failures.most_common(6)),
        "bot_attempts": r.attacker_attempts,
        "bot_refusals": dict(r.attacker_refusals.most_common(6)),
        "sms_total": len(inbox),
        "sms_bots": bot_sms,
        "sms_legit": len(inbox) - bot_sms,
        "sms_per_registration": round(len(inbox) / registered, 2) if registered else None,
        "yuan_total": round(price * len(inbox), 2),
        "yuan_per_registration": round(price * len(inbox) / registered, 3) if registered else None,
        "server_cpu_s": round(server_cpu_s, 1),
        "cpu_pct": cpu,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps({k: v for k, v in record.items() if k != "label"}, ensure_ascii=False))
    return record


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-seconds", type=float, default=60, help="the simulated hour, s")
    parser.add_argument(
        "--attacks", default="2400,9600", help="bot SMS requests per simulated hour, one run each"
    )
    parser.add_argument("--legit-users", type=int, default=200, help="per simulated hour")
    parser.add_argument("--systems", default="ours,c+,b")
    parser.add_argument(
        "--quick", action="store_true", help="one mix (the first), the hour in 20 s"
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.real_seconds, args.attacks = 20.0, args.attacks.split(",")[0]
    return args


async def run_all(args: argparse.Namespace, infra: Infrastructure, workdir: Path) -> list[dict]:
    names = [n for n in args.systems.split(",") if n]
    base = SimConfig(real_seconds=args.real_seconds, legit_users=args.legit_users)
    systems: dict[str, System] = {}
    records = []
    price = sms_price()
    try:
        for name in names:
            systems[name] = start(name, infra, base, workdir)
        baseline_id = max_user_id(infra)
        for attacks in (int(v) for v in args.attacks.split(",")):
            cfg = SimConfig(
                real_seconds=args.real_seconds,
                legit_users=args.legit_users,
                attack_attempts=attacks,
                legit_repeats_503=LEGIT_REPEATS_503,
            )
            for name in names:
                forget_registrations(infra, baseline_id)
                print(f"{name}: {attacks} bot requests + {cfg.legit_users} users per hour "
                      f"in {cfg.real_seconds:g} s", flush=True)  # fmt: skip
                records.append(await one_run(infra, systems[name], cfg, price))
    finally:
        for system in systems.values():
            system.proc.stop()
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.run import ensure_dependencies, save_results

    ensure_dependencies()
    workdir = Path(tempfile.mkdtemp(prefix="smsreg-attack-"))
    infra = Infrastructure(workdir)
    started = time.time()
    try:
        infra.start()
        assert infra.sandbox is not None
        infra.sandbox.set_latency(UPSTREAM_MS)
        records = asyncio.run(run_all(args, infra, workdir))
    finally:
        infra.stop()
    from bench.report import machine_info

    results = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python -m bench.attack_mix", *(argv or sys.argv[1:])]),
        "wall_s": round(time.time() - started),
        "machine": machine_info(),
        "upstream_ms": UPSTREAM_MS,
        "sms_price_yuan": sms_price(),
        "runs": records,
        "targets": attack_report.targets(records),
    }
    for target in results["targets"]:
        print(f"{'PASS' if target['pass'] else 'FAIL'} {target['target']}: {target['value']}")
    save_results(results, args, attack_report.write_docs)
    if args.keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
