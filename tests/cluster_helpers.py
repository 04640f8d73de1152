"""A real local Redis Cluster (three masters, no replicas) on free loopback ports, for tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis as sync_redis

from devstack.processes import RedisServer, free_port
from tests.polling import wait_until

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
# A node refuses a port above this unless its bus port is given: by default the cluster bus
# listens on port + 10000.
MAX_CLIENT_PORT = 55535


def cluster_port_pair(taken: set[int]) -> tuple[int, int]:
    """A free client port the server accepts and a free port for the cluster bus, both new
    to `taken` (to which they are added)."""
    while (port := free_port()) > MAX_CLIENT_PORT or port in taken:
        pass
    taken.add(port)
    while (bus_port := free_port()) in taken:
        pass
    taken.add(bus_port)
    return port, bus_port


class LocalRedisCluster:
    """Three `redis-server --cluster-enabled yes` processes joined into one cluster.

    Each node keeps its nodes.conf and log in its own directory under `directory`.
    """

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = Path(directory)
        self.nodes: list[RedisServer] = []
        taken: set[int] = set()
        for index in range(masters):
            node_dir = self.directory / f"node{index}"
            port, bus_port = cluster_port_pair(taken)
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--cluster-port", str(bus_port),
            ]  # fmt: skip
            self.nodes.append(RedisServer(node_dir, port=port, extra=extra))

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def startup_nodes(self) -> str:
        """The `redis.cluster_nodes` config value: "127.0.0.1:P1,127.0.0.1:P2,..."."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 30) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            create = [
                REDIS_CLI, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ]  # fmt: skip
            result = subprocess.run(
                create,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}")
            self._wait_until_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _wait_until_ok(self, timeout: float) -> None:
        """Until every node says cluster_state:ok and knows all three masters."""
        wait_until(
            lambda: [self._info(port) for port in self.ports],
            lambda states: all(
                state.get("cluster_state") == "ok"
                and state.get("cluster_known_nodes") == str(len(self.nodes))
                and state.get("cluster_slots_assigned") == "16384"
                for state in states
            ),
            what="cluster_state ok on every node",
            patience=timeout,
        )

    @staticmethod
    def _info(port: int) -> dict[str, str]:
        result = subprocess.run(
            [REDIS_CLI, "-p", str(port), "cluster", "info"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        pairs = (line.strip().partition(":") for line in result.stdout.splitlines())
        return {key: value for key, _, value in pairs if key}

    def node_client(self, port: int) -> sync_redis.Redis:
        """A plain (non-cluster) client of one node; close it after use."""
        return sync_redis.Redis(port=port, decode_responses=True)

    def flushall(self) -> None:
        """Empty every master (FLUSHALL acts on one node only in cluster mode)."""
        for port in self.ports:
            with self.node_client(port) as client:
                client.flushall()

    def keys_by_port(self, pattern: str = "*") -> dict[int, set[str]]:
        """The keys each node really holds, read node by node."""
        found = {}
        for port in self.ports:
            with self.node_client(port) as client:
                found[port] = set(client.scan_iter(match=pattern, count=1000))
        return found

    def keyslot(self, key: str) -> int:
        """CLUSTER KEYSLOT as the server computes it."""
        with self.node_client(self.ports[0]) as client:
            return int(client.execute_command("CLUSTER KEYSLOT", key))
