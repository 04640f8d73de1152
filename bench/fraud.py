"""make bench-fraud: the SMS-pumping simulation against the real server, today vs now.

    python -m bench.fraud [--real-seconds 300] [--attack-attempts 2400] [--legit-users 200]

Starts Redis, MariaDB, the Ronglian sandbox and server.py (one process, the simulator as its
trusted proxy), runs bench/fraud_sim.py once per configuration on a fresh Redis and inbox:

- today: `fraud.enabled: false` — the fixed limits only, as on main before the fraud guard;
- now: the shipped `fraud:` defaults of config.yml (`min_sends` 3, `elevated_sends` 3,
  `levels_per_send` 2);
- now-lenient: `fraud.min_sends: 20`, `fraud.elevated_sends: 10` (the issue's starting
  values: segments judged later);

and writes bench/results/fraud.json, docs/fraud-sms-per-minute.png and the results section of
docs/FRAUD.md (between the BEGIN/END markers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import redis.asyncio as aioredis

from bench.fraud_poison import run_scenarios
from bench.fraud_poison import table as poisoning_table
from bench.fraud_sim import SimConfig, Simulation, server_overrides
from bench.stack import ROOT, Proc, Sandbox
from bench.systems import admission_overrides
from devstack.processes import MariaDBServer, RedisServer, free_port

RESULTS = ROOT / "bench" / "results" / "fraud.json"
PLOT = ROOT / "docs" / "fraud-sms-per-minute.png"
DOC = ROOT / "docs" / "FRAUD.md"
BEGIN, END = "<!-- BEGIN bench-fraud -->", "<!-- END bench-fraud -->"
BUDGET = 1000

RUNS = {
    "today": {"SMSREG_FRAUD_ENABLED": "false"},
    "now": {},
    "now-lenient": {"SMSREG_FRAUD_MIN_SENDS": "20", "SMSREG_FRAUD_ELEVATED_SENDS": "10"},
}


def server_env(cfg: SimConfig, redis_url: str, mysql_port: int, sandbox_url: str) -> dict:
    env = {
        "SMSREG_REDIS_URL": redis_url,
        "SMSREG_MYSQL_PORT": str(mysql_port),
        "SMSREG_RONGLIAN_BASE_URL": sandbox_url,
        "SMSREG_SECURITY_TRUSTED_PROXIES": "127.0.0.1",
        "SMSREG_LIMITS_SMS_GLOBAL_PER_HOUR": str(BUDGET),
        "SMSREG_LOGGING_LEVEL": "WARNING",
        "SMSREG_SERVER_PROCESSES": "1",
        # The simulation measures the fraud guard, not overload: admission control out of
        # reach, so that no request is shed on a busy machine (docs/PERFORMANCE.md measures it).
        **admission_overrides(),
    }
    for section, values in server_overrides(cfg).items():
        for key, value in values.items():
            env[f"SMSREG_{section.upper()}_{key.upper()}"] = str(value)
    return env


async def one_run(name: str, cfg: SimConfig, redis_server, mariadb, sandbox, workdir: Path) -> dict:
    import redis as sync_redis

    with sync_redis.Redis(port=redis_server.port) as client:
        client.flushdb()
    sandbox.clear_inbox()
    with contextlib.closing(mariadb.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'smsreg'")
        if cur.fetchone():
            cur.execute("DROP TABLE IF EXISTS smsreg.ih_user_profile")
    port = free_port()
    env = {
        **server_env(cfg, redis_server.url, mariadb.port, sandbox.base_url),
        **RUNS[name],
    }
    server = Proc(
        "server",
        [sys.executable, "server.py", "--port", str(port)],
        workdir / f"server-{name.replace(', ', '-')}.log",
        env=env,
        port=port,
    ).start()
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        print(f"{name}: simulating {cfg.sim_seconds} s in {cfg.real_seconds:.0f} s", flush=True)
        sim = Simulation(cfg, f"http://127.0.0.1:{port}", redis, sandbox.base_url, BUDGET)
        result = await sim.run()
        inbox = sandbox.control("GET", "/inbox")
        attacker_blocks = set(sim.population.attacker_blocks)
        summary = result.summary()
        summary["inbox_attacker"] = sum(m["to"][:7] in attacker_blocks for m in inbox)
        summary["inbox_legit"] = len(inbox) - summary["inbox_attacker"]
        print(f"{name}: {json.dumps({k: v for k, v in summary.items() if k != 'per_minute'})}")
        # The poisoning scenarios on the same server, from a clean Redis (budget, limits).
        await redis.flushdb()
        sandbox.clear_inbox()
        summary["poisoning"] = await run_scenarios(
            f"http://127.0.0.1:{port}", redis, sandbox.base_url
        )
        print(f"{name}: poisoning {json.dumps(summary['poisoning'])}")
        return summary
    finally:
        await redis.aclose()
        server.stop()


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    styles = {"today": "--", "now": "-", "now-lenient": ":"}
    for name, summary in results.items():
        per_minute = summary["per_minute"]
        ax.plot(per_minute["attacker"], styles[name], color="#c0392b", label=f"attacker, {name}")
        ax.plot(per_minute["legit"], styles[name], color="#2471a3", label=f"legitimate, {name}")
    ax.set_xlabel("simulated minute")
    ax.set_ylabel("SMS sent per minute")
    ax.set_title("SMS pumping simulation: SMS per minute, attacker vs legitimate, today vs now")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def table(results: dict, cfg: SimConfig) -> str:
    today = results["today"]["attacker_sms"] or 1
    lines = [
        "| run | attacker SMS | vs today | legitimate registered | success | solved a PoW"
        " | budget left | attackers refused by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        refusals = ", ".join(
            f"{reason} {count}"
            for reason, count in sorted(s["attacker_refusals"].items(), key=lambda x: -x[1])
        )
        lines.append(
            f"| {name} | {s['attacker_sms']} | {100 * s['attacker_sms'] / today:.1f} % "
            f"| {s['legit_registered']} of {s['legit_users']} | {100 * s['legit_success']:.1f} % "
            f"| {s['legit_pow']} | {s['budget_left']} of {BUDGET} | {refusals} |"
        )
    lines.append("")
    lines.append(
        f"Simulated hour in {cfg.real_seconds:.0f} s; {cfg.attack_attempts} attacker requests "
        f"from {cfg.attacker_addresses} addresses ({cfg.attacker_v4_nets} IPv4 /24s, "
        f"{cfg.attacker_v6_nets} IPv6 /64s) to {cfg.attacker_blocks} number blocks, attackers "
        "solve every CAPTCHA and every proof of work they find before the hour is over; "
        f"{cfg.legit_users} legitimate users over "
        f"{cfg.legit_blocks} blocks, {100 * cfg.legit_share_behind_attacker_nat:.0f} % of them "
        f"behind the attackers' busiest /24s, each registering within {cfg.verify_within:.0f} s; "
        f"budget `limits.sms_global_per_hour` = {BUDGET}. Attacker SMS counted by the server's "
        "answers and checked against the sandbox inbox "
        + ", ".join(
            f"({n}: {s['inbox_attacker']} attacker, {s['inbox_legit']} legitimate)"
            for n, s in results.items()
        )
        + "."
    )
    lines += ["", "Poisoning and laundering (bench/fraud_poison.py), on the same servers:", ""]
    lines.append(poisoning_table({n: s["poisoning"] for n, s in results.items()}))
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:], encoding="utf-8")


async def main_async(cfg: SimConfig, runs: list[str]) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-fraud-"))
    redis_server = RedisServer(workdir / "redis").start()
    mariadb = MariaDBServer(workdir / "mariadb").start()
    sandbox = Sandbox.create(workdir).start()
    try:
        return {name: await one_run(name, cfg, redis_server, mariadb, sandbox, workdir)
                for name in runs}  # fmt: skip
    finally:
        sandbox.stop()
        mariadb.stop()
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-seconds", type=float, default=300.0)
    parser.add_argument("--attack-attempts", type=int, default=2400)
    parser.add_argument("--legit-users", type=int, default=200)
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="comma-separated: " + ", ".join(RUNS)
    )
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/FRAUD.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.run import ensure_dependencies

    ensure_dependencies()
    cfg = SimConfig(
        real_seconds=args.real_seconds,
        attack_attempts=args.attack_attempts,
        legit_users=args.legit_users,
    )
    runs = [name.strip() for name in args.runs.split(",")]
    results = asyncio.run(main_async(cfg, runs))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if not args.no_doc and set(runs) == set(RUNS):
        plot(results, PLOT)
        write_doc(table(results, cfg))
    print(table(results, cfg) if "today" in results else json.dumps(results)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
