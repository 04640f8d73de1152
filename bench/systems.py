"""The systems under test, each started on a free port against one run's infrastructure.

a        server.py (this repo, all protections on), 1 process
A        server.py as shipped: 1 process per core
O        server.py, 1 process, admission control as shipped (the overload and retry cells)
Q        server.py, 1 process, no admission control (the overload cells' contrast)
variant  server.py of another checkout (--variant NAME=DIR[,SMSREG_X=V...])
b        seed 000's Flask view under gunicorn with 4 sync workers (bench/flask_app.py)
c        the naive Tornado handler (bench/naive_app.py) on Tornado's defaults
c+       the same handler with CurlAsyncHTTPClient (keep-alive) and uvloop: the honest peer
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.stack import ROOT, Infrastructure, Proc
from devstack.processes import free_port

# How the tables and plots of docs/PERFORMANCE.md name each system.
NAMES = {
    "a": "(a) ours, 1 process",
    "A": "(A) ours, 2 processes (default)",
    "b": "(b) Flask+gunicorn 4 sync",
    "c": "(c) naive Tornado",
    "c+": "(c+) naive Tornado, curl + uvloop",
    "O": "(O) ours, 1 process, admission control as shipped",
    "Q": "(Q) ours, 1 process, no admission control",
}
NAIVE_FLAGS = {"c": [], "c+": ["--curl", "--uvloop"]}
NAIVE_LABELS = {
    "c": "naive Tornado handler",
    "c+": "naive Tornado handler, curl client (keep-alive) + uvloop",
}


@dataclass
class System:
    name: str
    label: str
    proc: Proc
    # Whether its CAPTCHA endpoint is measured: (b) has none, and (c+) serves (c)'s inline
    # render, already measured as (c).
    captcha: bool = True


def processes(count: int) -> dict[str, str]:
    """SMSREG_SERVER_PROCESSES=count, if this checkout's server has worker processes."""
    from services import config

    fields = {f.name for f in dataclasses.fields(config.ServerConfig)}
    return {"SMSREG_SERVER_PROCESSES": str(count)} if "processes" in fields else {}


def limit_overrides() -> dict[str, str]:
    """SMSREG_LIMITS_* = 10^9 for every rate limit the config knows.

    All load comes from one IP and a run sends more SMS in seconds than the hourly global
    budget allows: without this the benchmark would measure the refusal path. The limits are
    still checked and counted in Redis on every request (their cost is paid); only their
    ceilings are out of reach. Derived from services.config so new limits are covered.
    """
    from services import config

    section = getattr(config, "LimitsConfig", None)
    if section is None:
        return {}
    overrides = {
        f"SMSREG_LIMITS_{f.name.upper()}": "1000000000"
        for f in dataclasses.fields(section)
        if f.type in (int, "int")
    }
    fraud = getattr(config, "FraudConfig", None)
    if fraud is not None and "min_sends" in {f.name for f in dataclasses.fields(fraud)}:
        # The same for the fraud segments: every request comes from 127.0.0.1 and none is
        # verified, so its network would be elevated (proof of work) after min_sends sends.
        # Segments are still counted and judged on every send; they just never trip.
        overrides["SMSREG_FRAUD_MIN_SENDS"] = "1000000000"
    return overrides


def ours_env(infra: Infrastructure, max_clients: int) -> dict[str, str]:
    """server.py's settings for a run: this run's processes, the limits out of reach."""
    return {
        "SMSREG_REDIS_URL": infra.redis.url,
        "SMSREG_MYSQL_PORT": str(infra.mariadb.port),
        "SMSREG_RONGLIAN_BASE_URL": infra.sandbox.base_url,
        "SMSREG_PROVIDERS": "ronglian",  # the benchmark measures one provider
        # Same bound on sends in flight as (c) gets: at 100 ms upstream the default 100
        # would cap any design at 1000 req/s, a configuration limit, not the design's.
        "SMSREG_RONGLIAN_MAX_CLIENTS": str(max_clients),
        **limit_overrides(),
        **admission_overrides(),
    }


def admission_overrides(limit: int = 1_000_000_000) -> dict[str, str]:
    """Admission control (services/codes/admission.py) up to `limit` sends in flight.

    Out of reach by default, like the rate limits: the per-process comparison measures every
    request served, none shed (the gate is still passed on every send). A process still admits
    no more than --max-clients (the provider's concurrency). The overload cells set it.
    """
    from services import config

    if getattr(config, "AdmissionConfig", None) is None:
        return {}
    fields = {f.name for f in dataclasses.fields(config.AdmissionConfig)}
    overrides = {"SMSREG_ADMISSION_MAX_SENDS_IN_FLIGHT": str(limit)}
    if "max_loop_lag" in fields and limit >= 1_000_000_000:
        overrides["SMSREG_ADMISSION_MAX_LOOP_LAG"] = "0"  # and no shrinking under load
    return overrides


def start_ours(
    name: str, label: str, env: dict[str, str], directory: Path, workdir: Path
) -> System:
    """server.py of the checkout in `directory` (this repo, or a patched copy)."""
    port = free_port()
    args = [sys.executable, "server.py", "--port", str(port)]
    proc = Proc(name, args, workdir / f"{name}.log", port=port, env=env, cwd=directory)
    # (O) and (Q) are (a) with other admission settings: their CAPTCHA endpoint is (a)'s.
    return System(name, label, proc.start(), captcha=not is_overload_system(name))


def is_overload_system(name: str) -> bool:
    """(O), (Q) and variants named O…: measured in the overload cells, not the SMS matrix."""
    return name in ("O", "Q") or name.startswith("O")


def ours_specs(
    wanted: list[str], variants: list[str], common: dict[str, str]
) -> list[tuple[str, str, dict[str, str], Path]]:
    """(name, label, env, directory) of every build of our server that was asked for."""
    specs = []
    if "a" in wanted:
        # One process, like (c): the per-process comparison the targets are about.
        specs.append(("a", "ours: server.py, 1 process", {**common, **processes(1)}, ROOT))
    if "A" in wanted and processes(0):
        # As shipped: server.processes = 0, one worker process per core.
        label = "ours: server.py, 1 process per core (default)"
        specs.append(("A", label, {**common, **processes(0)}, ROOT))
    # The overload and retry cells: admission control as config.yml ships it, none of its
    # settings overridden, nor the provider's concurrency that bounds it (ronglian.max_clients).
    overload_env = {
        key: value
        for key, value in {**common, **processes(1)}.items()
        if not key.startswith("SMSREG_ADMISSION_") and key != "SMSREG_RONGLIAN_MAX_CLIENTS"
    }
    if "O" in wanted:
        label = "ours, 1 process, admission control as shipped"
        specs.append(("O", label, overload_env, ROOT))
    if "Q" in wanted:
        # The same without admission control: no in-flight limit, and the provider's
        # concurrency out of reach too (else it would bound admission): everything queues.
        env = {**common, **processes(1), "SMSREG_RONGLIAN_MAX_CLIENTS": "100000"}
        env.update(admission_overrides())
        specs.append(("Q", "ours, 1 process, no admission control", env, ROOT))
    for variant in variants:
        # NAME=DIR[,KEY=VALUE...]: server.py of another checkout (a patched copy).
        # A name starting with O is an overload variant: (O)'s settings, measured in those cells.
        name, _, rest = variant.partition("=")
        directory, *pairs = rest.split(",")
        base = overload_env if is_overload_system(name) else common
        env = dict(base, **dict(p.split("=", 1) for p in pairs if p))
        specs.append((name, f"variant {name}", env, Path(directory or ROOT).resolve()))
    return specs


def start_flask(infra: Infrastructure, workdir: Path) -> System:
    port = free_port()
    # `python -m gunicorn`, not the venv's gunicorn script: a script's shebang names the
    # interpreter path it was installed with, which breaks when the venv is reached through
    # another path (a symlinked .venv in a worktree).
    args = [
        sys.executable, "-m", "gunicorn",
        "-w", "4",
        "-b", f"127.0.0.1:{port}",
        "--backlog", "2048",
        "bench.flask_app:app",
    ]  # fmt: skip
    env = {
        "BENCH_REDIS_URL": infra.redis.url,
        "BENCH_MYSQL_PORT": str(infra.mariadb.port),
        "BENCH_RONGLIAN_URL": infra.sandbox.base_url,
    }
    proc = Proc("b", args, workdir / "b.log", port=port, env=env).start()
    return System("b", "seeds: Flask + gunicorn 4 sync", proc, captcha=False)


def start_naive(name: str, infra: Infrastructure, workdir: Path, max_clients: int) -> System:
    """(c), or (c+): the same handler with the client and loop our server uses."""
    port = free_port()
    args = [
        sys.executable, "-m", "bench.naive_app",
        "--port", str(port),
        "--redis-url", infra.redis.url,
        "--mysql-port", str(infra.mariadb.port),
        "--ronglian-url", infra.sandbox.base_url,
        "--max-clients", str(max_clients),
        *NAIVE_FLAGS[name],
    ]  # fmt: skip
    proc = Proc(name, args, workdir / f"{name}.log", port=port).start()
    return System(name, NAIVE_LABELS[name], proc, captcha=name == "c")


def start_systems(
    systems: dict[str, System],
    wanted: list[str],
    variants: list[str],
    infra: Infrastructure,
    workdir: Path,
    max_clients: int,
) -> None:
    """Start every system asked for into `systems` (the order the matrix measures them in).

    Filled as they start: if one fails, the caller still stops those already running.
    """
    for name, label, env, directory in ours_specs(wanted, variants, ours_env(infra, max_clients)):
        systems[name] = start_ours(name, label, env, directory, workdir)
    if "b" in wanted:
        systems["b"] = start_flask(infra, workdir)
    for name in NAIVE_FLAGS:
        if name in wanted:
            systems[name] = start_naive(name, infra, workdir, max_clients)
