"""MySQL beyond one machine: the server on a real 3-node MariaDB Galera cluster.

The cluster (devstack/processes.py: GaleraCluster) runs three mariadbd with the galera-4
provider on loopback ports; node 1 bootstraps it, nodes 2 and 3 join with a state transfer.
Each server instance is pointed at a different preferred node through `mysql.hosts`.
What Galera changes for the application, and what these tests hold it to:
- a write through one node is visible through another at once (causal reads);
- concurrent writes of one mobile through different nodes fail certification (error 1213)
  except one: retried, they end as exactly one user and DATAEXIST for the others;
- a node that dies or leaves the primary component is left for the next node, every request
  is answered, no acknowledged user is lost, and the node rejoins with the same data.

The numbers of each run (conflicts, retries, failovers, users lost) are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import pymysql
import pytest

from devstack.galera import GALERA_PROVIDER, GaleraCluster
from services.config import ConfigError, MysqlConfig, load_config
from services.db import DatabaseStats
from services.errors import Ret, ServiceError
from services.users import UserRepository
from tests.conftest import serving
from tests.flows import FAMILY_PASSWORD as MEIDUO_PASSWORD
from tests.flows import PASSWORD, MeiduoClient, metric, post, register, request_code
from tests.polling import async_wait_until

# A request must be answered within this many seconds even while a node dies: one query
# timeout on the dead node, the switch (connect timeout per node tried), one more query.
ANSWER_BOUND = 10.0
# Registrations in the stream during which a node is killed (a third before the kill).
STREAM = 18
GALERA_MYSQL = {"query_timeout": 2.0, "connect_timeout": 1.0, "failback_interval": 0.5}


# --- configuration (no cluster needed) ---------------------------------------------------


def test_hosts_config_parses_in_order_and_rejects_nonsense():
    config = load_config(None, environ={"SMSREG_MYSQL_HOSTS": "10.0.0.3:3306, 10.0.0.1:3307"})
    assert config.mysql.nodes() == [("10.0.0.3", 3306), ("10.0.0.1", 3307)]
    # Without hosts: the single host and port, as before.
    assert MysqlConfig(host="db", port=3310).nodes() == [("db", 3310)]
    for bad in ("10.0.0.1", "10.0.0.1:port", ":3306"):
        with pytest.raises(ConfigError, match=r"mysql\.hosts"):
            load_config(None, environ={"SMSREG_MYSQL_HOSTS": bad})
    with pytest.raises(ConfigError, match="conflict_retries"):
        load_config(None, environ={"SMSREG_MYSQL_CONFLICT_RETRIES": "-1"})


# --- the cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def galera():
    if not GaleraCluster.available():
        pytest.skip(
            f"{GALERA_PROVIDER} is missing: install the Debian package galera-4 "
            "(make test does) to run the Galera cluster tests"
        )
    # Run as root, the nodes run as user mysql (devstack/processes.py: GaleraNode): their
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


def address(node) -> str:
    return f"127.0.0.1:{node.port}"


def mobiles_on(node) -> list[str]:
    return [row[0] for row in node.rows("SELECT mobile FROM smsreg.ih_user_profile")]


def primary_of(node, size: int) -> bool:
    status = node.wsrep_status()
    return (
        status.get("wsrep_cluster_status") == "Primary"
        and status.get("wsrep_cluster_size") == str(size)
        and status.get("wsrep_local_state") == "4"
    )


async def poll(condition, within: float, what: str) -> None:
    """Until condition() holds, yielding to the loop (the servers under test run on it)."""

    async def probe() -> bool:
        return condition()

    await async_wait_until(probe, what=what, patience=within)


@pytest.mark.gen_test(timeout=60)
async def test_journey_register_through_node1_login_through_node3(
    make_galera_app, galera, sandbox, fresh_mobile
):
    first, third = await make_galera_app(0), await make_galera_app(2)
    assert first.services.db.node == address(galera.nodes[0])
    assert third.services.db.node == address(galera.nodes[2])
    async with serving(first) as via_node1, serving(third) as via_node3:
        mobile = fresh_mobile()
        code = await request_code(via_node1, sandbox, mobile)
        assert await register(via_node1, mobile, code) == {"errno": "0", "errmsg": "注册成功"}
        # Right away through the other node: causal reads see the committed user.
        login = {"mobile": mobile, "password": PASSWORD}
        assert (await post(via_node3, "/api/v1.0/sessions", login))["errno"] == "0"
        assert (await via_node3.json("/api/v1.0/user"))["data"]["mobile"] == mobile
        # meiduo's "is this mobile taken?" through node 3.
        assert (await via_node3.json(f"/mobiles/{mobile}/count/"))["count"] == 1
    for node in galera.nodes:
        assert mobiles_on(node) == [mobile]


@pytest.mark.gen_test(timeout=60)
async def test_twenty_concurrent_registrations_of_one_mobile_over_three_nodes(
    make_galera_app, sandbox, fresh_mobile, stats_report
):
    """Through HTTP: one SMS code, 20 requests over 3 instances on 3 nodes → one user.

    The code is single-use (checked in Redis before MySQL): the 19 others get NODATA.
    """
    apps = [await make_galera_app(index) for index in range(3)]
    stats_report.extend(app.services.db.stats for app in apps)
    async with serving(apps[0]) as c1, serving(apps[1]) as c2, serving(apps[2]) as c3:
        clients = [c1, c2, c3]
        mobile = fresh_mobile()
        code = await request_code(c1, sandbox, mobile)
        answers = await asyncio.gather(*(register(clients[i % 3], mobile, code) for i in range(20)))
        assert sorted(a["errno"] for a in answers) == ["0"] + ["4002"] * 19
        row = await apps[2].services.db.fetch_one(
            "SELECT COUNT(*) FROM ih_user_profile WHERE mobile = %s", (mobile,)
        )
        assert row == (1,)


@pytest.mark.gen_test(timeout=90)
async def test_concurrent_registrations_of_one_username_over_three_nodes(
    make_galera_app, sandbox, fresh_mobile, stats_report
):
    """Through HTTP where MySQL decides: 12 people with their own SMS codes register the
    same meiduo username at once through 3 instances on 3 nodes: one 302, 11 "用户名已存在"."""
    apps = [await make_galera_app(index) for index in range(3)]
    stats_report.extend(app.services.db.stats for app in apps)
    async with contextlib.AsyncExitStack() as stack:
        meiduos = [MeiduoClient(await stack.enter_async_context(serving(app))) for app in apps]
        forms = []
        for number in range(12):
            mobile = fresh_mobile()
            code = await request_code(meiduos[number % 3].client, sandbox, mobile, f"u{number}")
            forms.append(
                {
                    "username": "same_name",
                    "password": MEIDUO_PASSWORD,
                    "password2": MEIDUO_PASSWORD,
                    "mobile": mobile,
                    "sms_code": code,
                    "allow": "on",
                }
            )
        responses = await asyncio.gather(
            *(meiduos[i % 3].post_form("/register/", form) for i, form in enumerate(forms))
        )
    assert sorted(r.code for r in responses) == [302] + [400] * 11
    assert all("用户名已存在" in r.body.decode() for r in responses if r.code == 400)
    row = await apps[1].services.db.fetch_one(
        "SELECT COUNT(*) FROM ih_user_profile WHERE name = %s", ("same_name",)
    )
    assert row == (1,)


@pytest.mark.gen_test(timeout=90)
async def test_concurrent_inserts_of_one_mobile_on_three_nodes_make_one_user(
    make_galera_app, galera, fresh_mobile, stats_report
):
    """Where MySQL decides: 20 concurrent inserts of one mobile, spread over the 3 nodes,
    5 rounds. Certification conflicts are retried and end as DATAEXIST; one user each."""
    apps = [await make_galera_app(index) for index in range(3)]
    stats_report.extend(app.services.db.stats for app in apps)
    repositories = [app.services.users for app in apps]
    mobiles = [fresh_mobile() for _ in range(5)]
    for mobile in mobiles:
        outcomes = await asyncio.gather(
            *(repositories[i % 3].create(mobile, mobile, f"hash-{i}") for i in range(20)),
            return_exceptions=True,
        )
        created = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, ServiceError)]
        assert len(created) == 1, outcomes
        assert len(refused) == 19 and {e.ret for e in refused} == {Ret.DATAEXIST}, outcomes
        for node in galera.nodes:
            assert node.rows(
                "SELECT password_hash FROM smsreg.ih_user_profile WHERE mobile = %s", (mobile,)
            ) == [(created[0].password_hash,)]


@pytest.mark.gen_test(timeout=60)
async def test_transaction_that_fails_certification_is_run_again(
    make_galera_app, galera, fresh_mobile, stats_report
):
    """A deterministic conflict: node 2 commits a change to a row while a transaction on
    node 1 holds it. Node 1's commit fails certification (1213); Database.transaction runs
    it again, and both writes happened in order: node 1's value is the final one."""
    first, second = await make_galera_app(0), await make_galera_app(1)
    stats_report.extend([first.services.db.stats, second.services.db.stats])
    mobile = fresh_mobile()
    user = await UserRepository(first.services.db).create(mobile, mobile, "hash")
    attempts = 0

    async def set_avatar(cur) -> None:
        nonlocal attempts
        attempts += 1
        await cur.execute(
            "UPDATE ih_user_profile SET avatar_url = %s WHERE id = %s", ("node1", user.user_id)
        )
        if attempts == 1:
            await second.services.db.execute(
                "UPDATE ih_user_profile SET avatar_url = %s WHERE id = %s",
                ("node2", user.user_id),
            )

    stats = first.services.db.stats
    before = (stats.conflicts, stats.conflict_retries)
    await first.services.db.transaction(set_avatar)
    assert attempts == 2
    assert (stats.conflicts, stats.conflict_retries) == (before[0] + 1, before[1] + 1)
    for node in galera.nodes:
        sql = "SELECT avatar_url FROM smsreg.ih_user_profile WHERE id = %s"
        assert node.rows(sql, (user.user_id,)) == [("node1",)]


@pytest.mark.gen_test(timeout=60)
async def test_conflict_retries_are_bounded(make_galera_app, galera, fresh_mobile):
    """A transaction that loses every certification gives up with the 1213 error (DBERR
    for a client), after conflict_retries extra attempts."""
    first = await make_galera_app(0, mysql={"conflict_retries": 2})
    second = await make_galera_app(1)
    mobile = fresh_mobile()
    user = await UserRepository(first.services.db).create(mobile, mobile, "hash")
    attempts = 0

    async def always_overtaken(cur) -> None:
        nonlocal attempts
        attempts += 1
        sql = "UPDATE ih_user_profile SET avatar_url = %s WHERE id = %s"
        await cur.execute(sql, (f"node1-{attempts}", user.user_id))
        await second.services.db.execute(sql, (f"node2-{attempts}", user.user_id))

    with pytest.raises(pymysql.err.OperationalError) as raised:
        await first.services.db.transaction(always_overtaken)
    assert raised.value.args[0] == 1213
    assert attempts == 3


@pytest.mark.gen_test(timeout=90)
async def test_node_cut_off_from_the_cluster_is_left_and_taken_back(
    make_galera_app, galera, fresh_mobile, stats_report
):
    """A node outside the primary component (a network split) refuses queries (1047): the
    instance moves to the next node, and comes back to its preferred one after the split."""
    app = await make_galera_app(0)
    stats_report.append(app.services.db.stats)
    db = app.services.db
    assert db.node == address(galera.nodes[0])
    galera.nodes[0].set_isolated(True)
    try:
        await poll(
            lambda: galera.nodes[0].wsrep_status().get("wsrep_cluster_status") != "Primary",
            30,
            "non-primary",
        )
        # ... and the two others have formed the primary component without it.
        for node in galera.nodes[1:]:
            await poll(lambda node=node: primary_of(node, 2), 30, f"{node.name} primary of 2")
        mobile = fresh_mobile()
        user = await UserRepository(db).create(mobile, mobile, "hash")
        assert db.node == address(galera.nodes[1])
        assert db.stats.failovers == 1
        # A new instance checks wsrep_ready/wsrep_local_state when it connects.
        late = await make_galera_app(0)
        assert late.services.db.node == address(galera.nodes[1])
    finally:
        galera.nodes[0].set_isolated(False)
    galera.nodes[0].wait_synced(3, 60)
    assert mobiles_on(galera.nodes[0]) == [mobile]
    # Back on the preferred node (failback_interval 0.5 s), without a restart.
    await poll(lambda: db.node == address(galera.nodes[0]), 30, "back on node 1")
    assert await UserRepository(db).by_id(user.user_id) == user


@pytest.mark.gen_test(timeout=180)
async def test_node_killed_during_a_stream_of_registrations(
    make_galera_app, galera, sandbox, fresh_mobile, stats_report
):
    """Three instances (preferring nodes 1, 2, 3) register users while node 2 is killed
    (SIGKILL). Every request is answered in time, OK or DBERR; every OK user is on both
    survivors; node 2 rejoins with the same rows; the instance on node 2 keeps working."""
    apps = [await make_galera_app(index) for index in range(3)]
    stats_report.extend(app.services.db.stats for app in apps)
    victim = galera.nodes[1]
    done = 0
    killed_at: float | None = None
    answers: list[tuple[int, str, str, float, float]] = []  # app, mobile, errno, start, time

    async def registration(client, index: int, number: int) -> None:
        nonlocal done
        mobile = fresh_mobile()
        started = time.monotonic()
        text = await client.new_captcha(f"stream-{number}")
        sms = await client.send_sms(mobile, text, f"stream-{number}")
        errno = sms["errno"]
        if errno == "0":
            code = sandbox.inbox(mobile)[-1]["datas"][0]
            errno = (await register(client, mobile, code))["errno"]
        answers.append((index, mobile, errno, started, time.monotonic() - started))
        done += 1

    async def stream(client, index: int) -> None:
        for number in range(index, STREAM, 3):
            await registration(client, index, number)

    async def kill_after_some() -> None:
        nonlocal killed_at
        await poll(lambda: done >= STREAM // 3, 60, "a third of the registrations done")
        victim.kill()
        killed_at = time.monotonic()

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(serving(app)) for app in apps]
        await asyncio.gather(kill_after_some(), *(stream(c, i) for i, c in enumerate(clients)))

    assert killed_at is not None
    # Every request answered, OK or a clear DBERR, within the bound; never anything else.
    assert len(answers) == STREAM
    assert {errno for *_, errno, _, _ in answers} <= {"0", "4001"}, answers
    assert max(seconds for *_, seconds in answers) < ANSWER_BOUND, answers
    ok = {mobile for _, mobile, errno, _, _ in answers if errno == "0"}
    # The instance that preferred node 2 moved on and kept registering users.
    moved = apps[1].services.db
    assert moved.node != address(victim)
    assert any(i == 1 and e == "0" and s > killed_at for i, _, e, s, _ in answers), answers
    # Every acknowledged user is on both survivors.
    survivors = [galera.nodes[0], galera.nodes[2]]
    lost = {node.name: ok - set(mobiles_on(node)) for node in survivors}
    print(
        f"\ngalera kill: {len(ok)} OK, {len(answers) - len(ok)} DBERR, users lost: "
        f"{sum(len(m) for m in lost.values())}, slowest answer "
        f"{max(s for *_, s in answers):.2f}s"
    )
    assert lost == {node.name: set() for node in survivors}
    # Node 2 rejoins (state transfer from a survivor) with the same rows.
    rejoin_started = time.monotonic()
    victim.start()
    victim.wait_synced(3, 90)
    print(f"galera: node 2 rejoined in {time.monotonic() - rejoin_started:.1f}s")
    sql = "SELECT id, mobile, password_hash FROM smsreg.ih_user_profile ORDER BY id"
    reference = galera.nodes[0].rows(sql)
    assert {row[1] for row in reference} >= ok
    for node in galera.nodes[1:]:
        assert node.rows(sql) == reference
    # The instance returns to its preferred node and registers there: no restart needed.
    await poll(lambda: moved.node == address(victim), 30, "back on node 2")
    async with serving(apps[1]) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile, "after-rejoin")
        assert (await register(client, mobile, code))["errno"] == "0"
        # Operators see both switches.
        body = (await client.fetch("/metrics")).body.decode()
        failovers = metric(body, "smsreg_mysql_events_total", event="failovers")
        assert failovers == moved.stats.failovers >= 2
    assert mobile in mobiles_on(galera.nodes[0])
