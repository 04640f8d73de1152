"""MySQL beyond one machine: the server on a real 3-node MariaDB Galera cluster.

The cluster (devstack/galera.py: GaleraCluster) runs three mariadbd with the galera-4
provider on loopback ports; node 1 bootstraps it, nodes 2 and 3 join with a state transfer.
Each server instance is pointed at a different preferred node through `mysql.hosts`.
What Galera changes for the application, and what these tests hold it to:
- a write through one node is seen at once by reads and writes through another (causality);
- concurrent writes of one mobile through different nodes fail certification (error 1213)
  except one: retried, they end as exactly one user and DATAEXIST for the others;
- a node that dies or leaves the primary component is left for the next node, every request
  is answered, no acknowledged user is lost, and the node rejoins with the same data.

The numbers of each run (conflicts, retries, failovers, users lost) are printed (pytest -s).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from devstack.galera import GALERA_PROVIDER, GaleraCluster
from services.store.db_conflicts import DatabaseStats
from tests.galera.helpers import GALERA_MYSQL


@pytest.fixture(scope="package")
def galera():
    if not GaleraCluster.available():
        pytest.skip(
            f"{GALERA_PROVIDER} is missing: install the Debian package galera-4 "
            "(make test does) to run the Galera cluster tests"
        )
    # Run as root, the nodes run as user mysql (devstack/galera.py: GaleraNode): their
    # directory must not sit under pytest's private (0700) temporary directory.
    directory = Path(tempfile.mkdtemp(prefix="smsreg-galera-"))
    directory.chmod(0o755)
    started = time.monotonic()
    cluster = GaleraCluster(directory).start()
    print(f"\ngalera: 3 nodes synced in {time.monotonic() - started:.1f}s")
    yield cluster
    cluster.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def galera_state(galera, clean_state):
    """All three nodes up and synced, and no users (TRUNCATE replicates to every node)."""
    galera.heal()
    with contextlib.closing(galera.nodes[0].admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 'ih_user_profile'")
        if cur.fetchone():
            cur.execute("TRUNCATE TABLE ih_user_profile")
    return galera


@pytest.fixture
def make_galera_app(make_app, galera_state):
    """An application whose preferred MySQL node is galera.nodes[index]."""

    async def build(index: int, mysql: dict | None = None, **changes):
        mysql = {"hosts": galera_state.hosts_preferring(index), **GALERA_MYSQL, **(mysql or {})}
        # One client IP sends every SMS of these tests.
        limits = {"sms_per_ip_hour": 1000, "captcha_per_ip_minute": 1000}
        return await make_app(mysql=mysql, limits=limits, **changes)

    return build


@pytest.fixture
def stats_report():
    """Collects the Database stats of a test and prints them (the issue asks for them)."""
    collected: list[DatabaseStats] = []
    yield collected
    total = DatabaseStats()
    for stats in collected:
        total.conflicts += stats.conflicts
        total.conflict_retries += stats.conflict_retries
        total.failovers += stats.failovers
    print(
        f"\ngalera stats: conflicts={total.conflicts} retries={total.conflict_retries} "
        f"failovers={total.failovers}"
    )
