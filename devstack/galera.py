"""A MariaDB Galera cluster on loopback (real mariadbd nodes with galera-4), for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pymysql

from devstack.processes import MariaDBServer, free_port, wait_for_port

GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
# wsrep_local_state 4 = Synced: the node has every committed transaction and takes writes.
WSREP_SYNCED = "4"


class GaleraNode(MariaDBServer):
    """One mariadbd of a Galera cluster: a client port plus its own group, IST and SST ports.

    Started with --defaults-file (not --no-defaults): the SST scripts re-read the server's
    settings from that file. `peers` is the gcomm address list of the whole cluster.
    """

    def __init__(self, directory: Path, name: str, cluster_name: str = "smsreg", **kwargs):
        super().__init__(directory, **kwargs)
        self.name = name
        self.cluster_name = cluster_name
        self.group_port, self.ist_port, self.sst_port = free_port(), free_port(), free_port()
        self.peers = ""
        self.extra_options: list[str] = []
        # As root, run as the package's `mysql` user, as the Debian service does: the state
        # transfer script starts an rsync daemon, which as root would drop to user nobody and
        # could not write the datadir. The directory's parents must let that user through.
        self.run_as = "mysql" if os.geteuid() == 0 else None

    @property
    def client_address(self) -> str:
        """host:port of the node's client port, as `mysql.hosts` names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def group_address(self) -> str:
        return f"127.0.0.1:{self.group_port}"

    def start(self, *, bootstrap: bool = False) -> GaleraNode:  # type: ignore[override]
        """Start (bootstrap a new cluster, or join `peers`) without waiting for the sync."""
        if not GALERA_PROVIDER.exists():
            raise FileNotFoundError(
                f"{GALERA_PROVIDER} missing: install the Debian package galera-4"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        if bootstrap and not (self.datadir / "mysql").exists():
            self._install_db()  # a joiner gets the donor's whole datadir (SST)
        self.datadir.mkdir(exist_ok=True)
        defaults = self.directory / "my.cnf"
        defaults.write_text(self._defaults_file())
        if self.run_as:
            _chown_tree(self.directory, self.run_as)
        args = [self._binary(), f"--defaults-file={defaults}"]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        # Not start_listening(): a joiner opens its port only after its state transfer, and
        # the joiners are started together. The child holds its own descriptor of the log.
        with open(self.directory / "mariadb.log", "ab") as log:
            self.process = subprocess.Popen(
                [*args, *self.extra_options], stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        """SIGKILL: the node dies mid-transaction, as on a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def set_isolated(self, isolated: bool) -> None:
        """Cut the node off its cluster (gmcast.isolate), or let it rejoin: a network split."""
        with contextlib.closing(self.admin_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"SET GLOBAL wsrep_provider_options = 'gmcast.isolate={int(isolated)}'")

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """A query as root on this node, after it applied everything committed before."""
        with contextlib.closing(self.admin_connection()) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(sql, args)
            return list(cur.fetchall())

    def wsrep_status(self) -> dict[str, str]:
        """wsrep_* status variables, read as root over the socket ({} if unreachable)."""
        try:
            conn = pymysql.connect(
                unix_socket=str(self.socket_path), user="root", connect_timeout=1, read_timeout=2
            )
        except pymysql.err.Error:
            return {}
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
                return dict(cur.fetchall())
        except pymysql.err.Error:
            return {}
        finally:
            conn.close()

    def is_synced(self, cluster_size: int, status: dict[str, str] | None = None) -> bool:
        """Synced, in a primary component of `cluster_size` nodes (`status`: wsrep_status())."""
        status = self.wsrep_status() if status is None else status
        return (
            status.get("wsrep_local_state") == WSREP_SYNCED
            and status.get("wsrep_cluster_status") == "Primary"
            and status.get("wsrep_cluster_size") == str(cluster_size)
        )

    def wait_synced(self, cluster_size: int, timeout: float) -> None:
        """Until the node is Synced in a primary component of `cluster_size` nodes."""
        deadline = time.monotonic() + timeout
        # The client port opens once the node has its data (a joiner: after the transfer).
        # Polling the socket before that would leak pymysql's half-made unix sockets.
        try:
            wait_for_port(self.port, timeout, self.process)
        except RuntimeError:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}") from None
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")
            status = self.wsrep_status()
            if self.is_synced(cluster_size, status):
                return
            time.sleep(0.1)
        keys = ("wsrep_local_state_comment", "wsrep_cluster_status", "wsrep_cluster_size")
        state = [status.get(key) for key in keys]
        raise TimeoutError(f"{self.name} not synced after {timeout}s: {state}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.directory / "mariadb.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _defaults_file(self) -> str:
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                "gcache.size=64M",
                # A killed peer is evicted within a few seconds (defaults: 5 s / 15 s), so
                # the survivors' commits do not stall longer than a client's query timeout.
                "evs.keepalive_period=PT0.5S",
                "evs.inactive_check_period=PT0.5S",
                "evs.suspect_timeout=PT2S",
                "evs.inactive_timeout=PT4S",
                "evs.install_timeout=PT4S",
            ]
        )
        settings = {
            "datadir": self.datadir,
            "socket": self.socket_path,
            "pid-file": self.directory / "mysqld.pid",
            "port": self.port,
            "bind-address": "127.0.0.1",
            "skip-name-resolve": "",
            "innodb-buffer-pool-size": "32M",
            "innodb-log-file-size": "16M",
            "innodb-flush-log-at-trx-commit": 2,
            "innodb-autoinc-lock-mode": 2,
            "binlog-format": "ROW",
            "max-connections": 300,
            "wsrep-on": "ON",
            "wsrep-provider": GALERA_PROVIDER,
            "wsrep-provider-options": f'"{provider_options}"',
            "wsrep-cluster-name": self.cluster_name,
            "wsrep-cluster-address": f"gcomm://{self.peers}",
            "wsrep-node-name": self.name,
            "wsrep-node-address": self.group_address,
            "wsrep-node-incoming-address": f"127.0.0.1:{self.port}",
            "wsrep-sst-method": "rsync",
            "wsrep-sst-receive-address": f"127.0.0.1:{self.sst_port}",
            # Tests see every certification conflict: the server's own silent retry of an
            # autocommit statement (default 1) would hide some from the application.
            "wsrep-retry-autocommit": 0,
            **({"user": self.run_as} if self.run_as else {}),
        }
        lines = [f"{key}={value}" if value != "" else key for key, value in settings.items()]
        return "[mysqld]\n" + "\n".join(lines) + "\n"


class GaleraCluster:
    """A 3-node MariaDB Galera cluster on loopback: node 1 bootstraps, the others join by SST."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = Path(directory)
        self.nodes = [
            GaleraNode(self.directory / f"node{i}", f"node{i}") for i in range(1, size + 1)
        ]
        peers = ",".join(node.group_address for node in self.nodes)
        for node in self.nodes:
            node.peers = peers

    @staticmethod
    def available() -> bool:
        return GALERA_PROVIDER.exists()

    @property
    def hosts(self) -> str:
        """The `mysql.hosts` config value, node 1 first."""
        return ",".join(node.client_address for node in self.nodes)

    def start(self, timeout: float = 90) -> GaleraCluster:
        try:
            first, *others = self.nodes
            first.start(bootstrap=True).wait_synced(1, timeout)
            first._ensure_app_user()  # the joiners copy it with their state transfer (SST)
            for node in others:
                node.start()
            for node in others:
                node.wait_synced(len(self.nodes), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def hosts_preferring(self, index: int) -> str:
        """`mysql.hosts` for an instance whose preferred node is nodes[index]."""
        order = self.nodes[index:] + self.nodes[:index]
        return ",".join(node.client_address for node in order)

    def heal(self, timeout: float = 60) -> None:
        """Every node running, in the cluster and synced (after a test killed or cut one)."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                node.start()
            else:
                node.set_isolated(False)
        for node in self.nodes:
            node.wait_synced(len(self.nodes), timeout)


def _chown_tree(top: Path, user: str) -> None:
    shutil.chown(top, user, user)
    for parent, dirs, files in os.walk(top):
        for name in dirs + files:
            shutil.chown(Path(parent) / name, user, user)
