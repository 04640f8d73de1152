"""A Galera node that dies or leaves the primary component: it is left for the next node,
every request is answered, no acknowledged user is lost, and the node rejoins with the same
data (tests/galera/conftest.py starts the cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from services.accounts.users import UserRepository
from tests.conftest import serving
from tests.flows import metric, register, request_code
from tests.galera.helpers import ANSWER_BOUND, STREAM, mobiles_on, poll


@pytest.mark.gen_test(timeout=90)
async def test_node_cut_off_from_the_cluster_is_left_and_taken_back(
    make_galera_app, galera, fresh_mobile, stats_report
):
    """A node outside the primary component (a network split) refuses queries (1047): the
    instance moves to the next node, and comes back to its preferred one after the split."""
    app = await make_galera_app(0)
    stats_report.append(app.services.db.stats)
    db = app.services.db
    assert db.node == galera.nodes[0].client_address
    galera.nodes[0].set_isolated(True)
    try:
        await poll(
            lambda: galera.nodes[0].wsrep_status().get("wsrep_cluster_status") != "Primary",
            30,
            "non-primary",
        )
        # ... and the two others have formed the primary component without it.
        for node in galera.nodes[1:]:
            await poll(lambda node=node: node.is_synced(2), 30, f"{node.name} primary of 2")
        mobile = fresh_mobile()
        user = await UserRepository(db).create(mobile, mobile, "hash")
        assert db.node == galera.nodes[1].client_address
        assert db.stats.failovers == 1
        # A new instance checks wsrep_ready/wsrep_local_state when it connects.
        late = await make_galera_app(0)
        assert late.services.db.node == galera.nodes[1].client_address
    finally:
        galera.nodes[0].set_isolated(False)
    galera.nodes[0].wait_synced(3, 60)
    assert mobiles_on(galera.nodes[0]) == [mobile]
    # Back on the preferred node (failback_interval 0.5 s), without a restart.
    await poll(lambda: db.node == galera.nodes[0].client_address, 30, "back on node 1")
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
    assert moved.node != victim.client_address
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
    await poll(lambda: moved.node == victim.client_address, 30, "back on node 2")
    async with serving(apps[1]) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile, "after-rejoin")
        assert (await register(client, mobile, code))["errno"] == "0"
        # Operators see both switches.
        body = (await client.fetch("/metrics")).body.decode()
        failovers = metric(body, "smsreg_mysql_events_total", event="failovers")
        assert failovers == moved.stats.failovers >= 2
    assert mobile in mobiles_on(galera.nodes[0])
