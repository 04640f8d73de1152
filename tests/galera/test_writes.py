"""Writes on a real 3-node MariaDB Galera cluster (tests/galera/conftest.py): the journey over
two nodes, concurrent writes of one mobile or name through different nodes, certification
conflicts run again, and bounded. The numbers of each run are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import contextlib

import pymysql
import pytest

from services.accounts.users import UserRepository
from services.config import ConfigError, MysqlConfig, load_config
from services.errors import Ret, ServiceError
from tests.conftest import serving
from tests.flows import FAMILY_PASSWORD as MEIDUO_PASSWORD
from tests.flows import PASSWORD, MeiduoClient, post, register, request_code
from tests.galera.helpers import mobiles_on, poll, statement_arrived

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


@pytest.mark.gen_test(timeout=60)
async def test_journey_register_through_node1_login_through_node3(
    make_galera_app, galera, sandbox, fresh_mobile
):
    first, third = await make_galera_app(0), await make_galera_app(2)
    assert first.services.db.node == galera.nodes[0].client_address
    assert third.services.db.node == galera.nodes[2].client_address
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
    assert (first.services.db.node, second.services.db.node) == tuple(
        node.client_address for node in galera.nodes[:2]
    )
    stats_report.extend([first.services.db.stats, second.services.db.stats])
    mobile = fresh_mobile()
    # Node 2's UPDATE below matches this row even if node 2 has not applied it yet: it waits
    # for it (test_a_write_through_a_node_behind_the_cluster_waits_for_it). Before, it could
    # match no row on a busy machine, replicate nothing, and node 1 met no conflict.
    user = await UserRepository(first.services.db).create(mobile, mobile, "hash")
    seen: list[str | None] = []  # the avatar each attempt found

    async def set_avatar(cur) -> None:
        await cur.execute("SELECT avatar_url FROM ih_user_profile WHERE id = %s", (user.user_id,))
        seen.append((await cur.fetchone())[0])
        await cur.execute(
            "UPDATE ih_user_profile SET avatar_url = %s WHERE id = %s", ("node1", user.user_id)
        )
        if len(seen) == 1:
            await second.services.db.execute(
                "UPDATE ih_user_profile SET avatar_url = %s WHERE id = %s",
                ("node2", user.user_id),
            )

    stats = first.services.db.stats
    before = (stats.conflicts, stats.conflict_retries)
    await first.services.db.transaction(set_avatar)
    # Run twice; the second run started from node 2's committed write.
    assert seen == [None, "node2"]
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
    assert (first.services.db.node, second.services.db.node) == tuple(
        node.client_address for node in galera.nodes[:2]
    )
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


@pytest.mark.gen_test(timeout=60)
async def test_a_write_through_a_node_behind_the_cluster_waits_for_it(
    make_galera_app, galera, fresh_mobile
):
    """A password changed through node 2 right after the registration through node 1 is
    changed, even while node 2 has not applied the registration yet (held behind here by
    FLUSH TABLES WITH READ LOCK, which stops it applying others' writes). With causal reads only
    (wsrep_sync_wait = 1) the UPDATE ran first, matched no row, and was answered OK: lost."""
    first = await make_galera_app(0)
    # Roomy: the change waits on node 2 until the test lets node 2 catch up.
    second = await make_galera_app(1, mysql={"query_timeout": 30.0})
    behind = galera.nodes[1]
    assert second.services.db.node == behind.client_address
    with contextlib.closing(behind.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("FLUSH TABLES WITH READ LOCK")
        mobile = fresh_mobile()
        user = await UserRepository(first.services.db).create(mobile, mobile, "old-hash")
        change = asyncio.ensure_future(
            UserRepository(second.services.db).set_password_hash(user.user_id, "new-hash")
        )
        sql = "UPDATE ih_user_profile SET password_hash"
        await poll(lambda: statement_arrived(behind, sql), 20, "the change on node 2")
        cur.execute("UNLOCK TABLES")
    await change
    for node in galera.nodes:
        sql = "SELECT password_hash FROM smsreg.ih_user_profile WHERE id = %s"
        assert node.rows(sql, (user.user_id,)) == [("new-hash",)]
