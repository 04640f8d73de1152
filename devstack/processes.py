"""Real redis-server and mariadbd processes on loopback, for `make run`, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pymysql

MARIADBD_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen | None = None, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def start_listening(
    args: list[str],
    port: int,
    log_path: Path | None,
    *,
    timeout: float = 30,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    name: str | None = None,
    new_session: bool = False,
    host: str = "127.0.0.1",
) -> subprocess.Popen:
    """Start `args`, its output appended to log_path, and wait until it listens on `port`.

    If it exits first or is not listening after `timeout` seconds it is stopped (never left
    behind) and a RuntimeError carries the end of its log. `log_path` None keeps the caller's
    stdout (`make run` shows the children's output); `env` None inherits ours. `host` is
    the address the port is probed on ("::1" for a process listening on IPv6 only).
    """
    if log_path is None:
        process = subprocess.Popen(args, cwd=cwd, env=env, start_new_session=new_session)
    else:
        # The child holds its own descriptor of the log: ours can close right away.
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
    try:
        wait_for_port(port, timeout, process, host)
    except (RuntimeError, TimeoutError) as exc:
        stop_process(process)
        output = log_path.read_text(errors="replace")[-4000:] if log_path else ""
        raise RuntimeError(f"{name or args[0]} did not start: {exc}\n{output}") from exc
    return process


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds (None: not started)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# The production setting (docs/OPERATIONS.md, "What a Redis restart loses"): every write is
# appended to a log before Redis answers, fsynced every second; replayed at start.
REDIS_PERSISTENT = ["--appendonly", "yes", "--appendfsync", "everysec"]


class RedisServer:
    """A redis-server with its data in `directory`; restartable on the same port.

    Without persistence unless `extra` asks for it (REDIS_PERSISTENT): tests flush it anyway.
    """

    def __init__(self, directory: Path, port: int | None = None, extra: list[str] | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.extra = extra or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            *self.extra,
        ]  # fmt: skip
        self.process = start_listening(args, self.port, self.directory / "redis.log", timeout=10)
        return self

    def stop(self) -> None:
        stop_process(self.process)


class MariaDBServer:
    """A mariadbd with its data in `directory`, a database and a password user for the app."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        database: str = "smsreg",
        user: str = "smsreg",
        password: str = "smsreg",
    ):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.database, self.user, self.password = database, user, password
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_path(self) -> Path:
        return self.directory / "mysqld.sock"

    def start(self) -> MariaDBServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        first_start = not (self.datadir / "mysql").exists()
        if first_start:
            self._install_db()
        self.process = start_listening(
            [
                self._binary(),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket_path}",
                f"--pid-file={self.directory / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-log-bin",
                "--max-connections=500",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            self.port,
            self.directory / "mariadb.log",
            timeout=60,
        )
        self._ensure_app_user()
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        if self._log:
            self._log.close()
            self._log = None

    def _binary(self) -> str:
        for candidate in MARIADBD_CANDIDATES:
            if Path(candidate).exists():
                return candidate
        raise FileNotFoundError("mariadbd not found: install the Debian package mariadb-server")

    def _install_db(self) -> None:
        args = [
            shutil.which("mariadb-install-db") or "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {result.stdout}{result.stderr}")

    def _ensure_app_user(self) -> None:
        # Root logs in over the unix socket (socket auth); the app uses TCP and a password.
        admin = pymysql.connect(unix_socket=str(self.socket_path), user="root")
        try:
            with admin.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
                cur.execute(
                    "CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s",
                    (self.user, self.password),
                )
                cur.execute(f"GRANT ALL ON `{self.database}`.* TO %s@'127.0.0.1'", (self.user,))
        finally:
            admin.close()

    def admin_connection(self) -> pymysql.Connection:
        """A root connection (for tests that inspect or reset tables)."""
        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", database=self.database, autocommit=True
        )
