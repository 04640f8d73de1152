"""The processes a benchmark run needs, its data, and CPU accounting for them (Linux /proc)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from devstack import processes

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
VENV_BIN = Path(sys.executable).parent
ALPHABET = "ACEFHJKMNPRTUVWXY34679"
REGISTERED_USERS = 20_000


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """pid and every process below it (gunicorn's workers, a server's children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Proc:
    """A child process serving on `port`, with its log file, started from directory `cwd`."""

    name: str
    args: list[str]
    log_path: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> Proc:
        # Its own session: a Ctrl-C reaches the benchmark only, whose stop() ends the children.
        self.process = processes.start_listening(
            self.args,
            self.port,
            self.log_path,
            timeout=timeout,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            name=self.name,
            new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        processes.stop_process(self.process, timeout=15)


class Sandbox(Proc):
    """The Ronglian sandbox (rate limits off, access log off) with its control API."""

    @classmethod
    def create(cls, workdir: Path, inbox_limit: int | None = None) -> Sandbox:
        port = processes.free_port()
        config = workdir / "sandbox.json"
        limit = {} if inbox_limit is None else {"inbox_limit": inbox_limit}
        config.write_text(json.dumps({"rate_limits": False, **limit}))
        args = [
            sys.executable,
            "-m",
            "sandbox.ronglian",
            "--port",
            str(port),
            "--config-json",
            str(config),
            "--log-level",
            "WARNING",
        ]
        return cls("sandbox", args, workdir / "sandbox.log", port=port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, method: str, path: str, payload: object = None) -> object:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_latency(self, ms: int) -> None:
        self.control("PUT", "/faults", {"latency_ms": ms})

    def clear_inbox(self) -> None:
        self.control("DELETE", "/inbox")

    def inbox_size(self) -> int:
        return len(self.control("GET", "/inbox"))


def wait_quiet(port: int, path: str, budget: float = 40.0) -> float:
    """Wait until a trivial request answers within 0.5 s (backlogs drained); return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < budget:
        t0 = time.monotonic()
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3),
        ):
            pass
        # urlopen raises HTTPError (an OSError) for the 404 we ask for: that is an answer.
        if time.monotonic() - t0 < 0.5:
            return time.monotonic() - start
        time.sleep(0.3)
    return time.monotonic() - start


class Infrastructure:
    """Redis, MariaDB (its user table filled) and the Ronglian sandbox of one run."""

    def __init__(self, workdir: Path, inbox_limit: int | None = None) -> None:
        self.workdir = workdir
        self.inbox_limit = inbox_limit
        self.redis: processes.RedisServer | None = None
        self.mariadb: processes.MariaDBServer | None = None
        self.sandbox: Sandbox | None = None

    def start(self) -> Infrastructure:
        import redis

        self.redis = processes.RedisServer(self.workdir / "redis").start()
        self.mariadb = processes.MariaDBServer(self.workdir / "mariadb").start()
        self.sandbox = Sandbox.create(self.workdir, self.inbox_limit).start()
        self.prepare_database()
        self.redis_client = redis.Redis(port=self.redis.port, decode_responses=True)
        return self

    def stop(self) -> None:
        for server in (self.sandbox, self.mariadb, self.redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()

    def servers(self) -> dict[str, processes.RedisServer | processes.MariaDBServer | Sandbox]:
        return {"redis": self.redis, "mariadb": self.mariadb, "sandbox": self.sandbox}

    def pids(self) -> dict[str, int]:
        return {
            "sandbox": self.sandbox.pid,
            "redis": self.redis.process.pid,
            "mariadb": self.mariadb.process.pid,
        }

    def mysql(self) -> Any:
        """A PyMySQL connection (autocommit) to the bench's database, as the servers use it."""
        import pymysql

        assert self.mariadb is not None
        return pymysql.connect(
            host="127.0.0.1",
            port=self.mariadb.port,
            user="smsreg",
            password="smsreg",
            database="smsreg",
            autocommit=True,
        )

    def prepare_database(self) -> None:
        """ih_user_profile with REGISTERED_USERS rows (mobiles 15x..., never the bench's 13x)."""
        conn = self.mysql()
        schema = (ROOT / "sql" / "schema.sql").read_text(encoding="utf-8")
        lines = [ln for ln in schema.splitlines() if not ln.lstrip().startswith("--")]
        with conn.cursor() as cur:
            for statement in "\n".join(lines).split(";"):
                if statement.strip():
                    cur.execute(statement)
            rows = [(f"user{n}", "x" * 60, f"15{n:09d}") for n in range(REGISTERED_USERS)]
            for i in range(0, len(rows), 2000):
                cur.executemany(
                    "INSERT IGNORE INTO ih_user_profile (name, password_hash, mobile) "
                    "VALUES (%s, %s, %s)",
                    rows[i : i + 2000],
                )
        conn.close()

    def reset_redis(self) -> None:
        """Empty Redis of every send's traces (codes, guards, counts, segments, CAPTCHAs)
        between cells, but keep the server's set of registered numbers: it mirrors MySQL's
        users, which no cell changes, and without it the next cell's first seconds would
        measure its rebuild (every send asking MySQL at once, the pool growing one connection
        at a time under a saturated loop: 27-61 DBERR in a 0 ms, 200-connection cell)."""
        kept = "registered:{registered}:*"
        doomed = [key for key in self.redis_client.scan_iter(count=1000) if not fnmatch(key, kept)]
        for start in range(0, len(doomed), 1000):
            self.redis_client.unlink(*doomed[start : start + 1000])

    def seed_captchas(self, count: int, path: Path, index: int) -> Path:
        """count CAPTCHAs in Redis and a file of 'mobile id text' tuples for the load generator.

        Cell `index` gets its own mobiles (13xx prefix) and CAPTCHA ids.
        """
        prefix = cell_prefix(index)
        rng = random.Random(index)
        pipe = self.redis_client.pipeline(transaction=False)
        with open(path, "w", encoding="ascii") as fh:
            for n in range(count):
                cid = f"bench{index}x{n}"
                text = "".join(rng.choice(ALPHABET) for _ in range(4))
                pipe.set(f"image_code:{cid}", text, ex=900)
                fh.write(f"{prefix}{n:07d} {cid} {text}\n")
                if n % 5000 == 4999:
                    pipe.execute()
        pipe.execute()
        return path


def cell_prefix(index: int) -> str:
    """The first 4 digits of cell `index`'s mobiles (13xx, then 14xx ...)."""
    return f"1{3 + index // 100}{index % 100:02d}"


@dataclass
class CpuSnapshot:
    at: float  # time.monotonic()
    cpu_s: dict[str, float]  # CPU-seconds of each watched process (tree)
    busy: tuple[float, float]  # machine_busy()


class CpuMeter:
    """CPU of the server under test and of the infrastructure, between two snapshots."""

    def __init__(self, server_pid: int, infra: Infrastructure) -> None:
        pids = infra.pids()
        self.watched = {
            "server": lambda: tree_cpu_seconds(server_pid),
            **{name: (lambda pid=pid: cpu_seconds(pid)) for name, pid in pids.items()},
        }

    def snapshot(self) -> CpuSnapshot:
        at = time.monotonic()
        return CpuSnapshot(at, {k: f() for k, f in self.watched.items()}, machine_busy())

    @staticmethod
    def percent(before: CpuSnapshot, after: CpuSnapshot, loadgen_pct: float) -> dict:
        """% of one core per process, the load generator's own figure, the machine's total."""
        elapsed = after.at - before.at
        cpu = {
            k: round(100 * (after.cpu_s[k] - before.cpu_s[k]) / elapsed, 1) for k in before.cpu_s
        }
        cpu["loadgen"] = loadgen_pct
        busy = after.busy[0] - before.busy[0]
        cpu["machine_busy_of_200"] = round(200 * busy / max(1, after.busy[1] - before.busy[1]), 1)
        # What the rest of this shared machine (other sessions' tests, the kernel) took meanwhile.
        ours = sum(cpu[k] for k in (*before.cpu_s, "loadgen"))
        cpu["others"] = round(max(0.0, cpu["machine_busy_of_200"] - ours), 1)
        return cpu
