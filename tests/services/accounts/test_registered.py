"""The set of registered numbers (services/accounts/registered.py), attacked where it could lie:
a released number still "registered" (a deleted account, a changed mobile, a late add, a
rebuild racing a removal), a flushed or evicted Redis, a host app writing behind our back;
and the point of it: no SELECT for a send once it is ready, on one Redis or a Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sys

import pytest

from services.accounts.deletion_purge import DeletionPurger
from services.accounts.registered import Rebuild, RegisteredMobiles
from services.codes.purposes import Purpose
from services.errors import Ret
from services.store import keys
from tests.conftest import ROOT, serving
from tests.flows import (
    CLIENT_IP,
    PASSWORD_HASH,
    code_for,
    pass_resend_interval,
    post,
    refusal,
    register,
    request_code,
    send_code,
    solved_captcha,
)
from tests.polling import async_wait_until
from tests.redis_round_trips import RoundTrips

ON = {"accounts": {"registered_set": True}}


@pytest.fixture
def with_set(io_loop, make_services):
    """The services with the set on, once its start-up rebuild made it ready."""

    async def build(**changes: object):
        services = await make_services(**ON, **changes)
        await until_ready(services)
        return services

    return build


async def until_ready(services) -> None:
    await async_wait_until(
        lambda: services.redis.exists(keys.registered_ready_key()), what="the set ready"
    )


async def purge(services, user_id: int) -> None:
    """The account's deletion requested and, its cooling-off over, completed (the purge of
    python -m tools.accounts, with the set the tool builds)."""
    now = datetime.datetime(2026, 1, 1)
    await services.db.execute(
        "INSERT INTO ih_account_deletion (user_id, status, requested_at, purge_after)"
        " VALUES (%s, 'pending', %s, %s)",
        (user_id, now, now),
    )
    later = now + datetime.timedelta(days=30)
    report = await DeletionPurger(
        services.db,
        services.sessions,
        services.config.deletion,
        clock=lambda: later,
        registered=services.users.registered,
    ).purge()
    assert report.completed == 1


async def com_select(mariadb_server) -> int:
    """MariaDB's count of SELECT statements run so far, by every connection."""
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        return int(cur.fetchone()[1])


# --- released numbers are free at once --------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_deleted_accounts_number_gets_a_register_code(with_set, sandbox, fresh_mobile):
    services = await with_set()
    mobile = fresh_mobile()
    user = await services.users.create(mobile, mobile, PASSWORD_HASH)
    assert await services.users.known_registered(mobile) is True
    taken = await refusal(send_code(services, mobile, captcha_id="before"))
    assert (taken.ret, taken.field) == (Ret.DATAEXIST, "mobile")

    await purge(services, user.user_id)

    assert await services.users.known_registered(mobile) is False
    await send_code(services, mobile, captcha_id="after")
    assert len(sandbox.inbox(mobile)) == 1
    await pass_resend_interval(services.redis, mobile)
    reset = await refusal(send_code(services, mobile, Purpose.RESET_PASSWORD, captcha_id="r"))
    assert reset.ret == Ret.USERERR  # no reset code to a deleted account's number


@pytest.mark.gen_test(timeout=30)
async def test_a_mobile_change_frees_the_old_number_and_takes_the_new(
    with_set, sandbox, fresh_mobile
):
    services = await with_set()
    old, new = fresh_mobile(), fresh_mobile()
    user = await services.users.create(old, old, PASSWORD_HASH)
    await services.users.move_to_mobile(user, new)

    assert await services.users.known_registered(old) is False
    assert await services.users.known_registered(new) is True
    await send_code(services, old, captcha_id="old")
    assert len(sandbox.inbox(old)) == 1
    taken = await refusal(send_code(services, new, captcha_id="new"))
    assert taken.ret == Ret.DATAEXIST


@pytest.mark.gen_test(timeout=60)
async def test_registration_and_sms_sign_up_over_http_join_the_set(make_app, sandbox, fresh_mobile):
    async with serving(await make_app(**ON)) as client:
        services = client.app.services
        await until_ready(services)
        registering, signing_up = fresh_mobile(), fresh_mobile()
        code = await request_code(client, sandbox, registering)
        assert (await register(client, registering, code))["errno"] == "0"
        code = await code_for(client, sandbox, signing_up, "login")
        body = {"mobile": signing_up, "sms_code": code, "agree": True}
        assert (await post(client, "/api/v1.0/sessions", body))["errno"] == "0"
        assert await services.users.known_registered(registering) is True
        assert await services.users.known_registered(signing_up) is True


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_mobile_change_keeps_the_old_number_registered(with_set, fresh_mobile):
    services = await with_set()
    mine, theirs = fresh_mobile(), fresh_mobile()
    user = await services.users.create(mine, mine, PASSWORD_HASH)
    await services.users.create(theirs, theirs, PASSWORD_HASH)
    refused = await refusal(services.users.move_to_mobile(user, theirs))
    assert refused.ret == Ret.DATAEXIST
    # Taken out before the UPDATE, which then failed: put back, the row still holds it.
    assert await services.users.known_registered(mine) is True
    assert await services.redis.exists(keys.registered_ready_key())


@pytest.mark.gen_test(timeout=30)
async def test_a_late_add_never_brings_back_a_released_number(with_set, fresh_mobile):
    services = await with_set()
    registered = services.users.registered
    mobile = fresh_mobile()
    user = await services.users.create(mobile, mobile, PASSWORD_HASH)
    # A registration that read the epoch, wrote its row, then stalled before its add ...
    seen = await registered.epoch()
    # ... while the number was released (the purge removes it before and after) ...
    await purge(services, user.user_id)
    # ... adds nothing when it resumes: the epoch moved, and MySQL has no such row.
    await registered.added(mobile, seen)
    assert await services.users.known_registered(mobile) is False


async def operator_command(config, *argv: str) -> str:
    """python -m ARGV (tools.accounts, scripts.restore_mobile) on this test's stores, with the
    shipped config (the set on)."""
    env = {
        **os.environ,
        "SMSREG_MYSQL_PORT": str(config.mysql.port),
        "SMSREG_REDIS_URL": config.redis.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.gen_test(timeout=120)
async def test_the_operator_commands_write_through(with_set, config, fresh_mobile):
    services = await with_set()
    hijacker, owner, deleted = fresh_mobile(), fresh_mobile(), fresh_mobile()
    user = await services.users.create("victim", hijacker, PASSWORD_HASH)
    await operator_command(
        services.config, "scripts.restore_mobile", "--user-id", str(user.user_id),
        "--mobile", owner,
    )  # fmt: skip
    assert await services.users.known_registered(hijacker) is False
    assert await services.users.known_registered(owner) is True

    gone = await services.users.create(deleted, deleted, PASSWORD_HASH)
    await services.db.execute(
        "INSERT INTO ih_account_deletion (user_id, status, requested_at, purge_after)"
        " VALUES (%s, 'pending', '2026-01-01', '2026-01-02')",
        (gone.user_id,),
    )
    await operator_command(services.config, "tools.accounts", "purge", "--now", "2026-02-01")
    assert await services.users.known_registered(deleted) is False
    assert await services.redis.exists(keys.registered_ready_key())


# --- Redis lost, evicted, or a rebuild racing a removal ---------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_flushed_redis_falls_back_to_mysql_then_rebuilds(with_set, sandbox, fresh_mobile):
    services = await with_set()
    taken, free = fresh_mobile(), fresh_mobile()
    await services.users.create(taken, taken, PASSWORD_HASH)
    await services.redis.flushall()

    assert await services.users.known_registered(taken) is None  # unknown, not "free"
    refused = await refusal(send_code(services, taken, captcha_id="t"))
    assert refused.ret == Ret.DATAEXIST  # the SELECT said so
    await send_code(services, free, captcha_id="f")
    assert len(sandbox.inbox(free)) == 1

    await until_ready(services)  # the unknown answer started a rebuild
    assert await services.users.known_registered(taken) is True
    assert await services.users.known_registered(fresh_mobile()) is False


@pytest.mark.gen_test(timeout=30)
async def test_an_evicted_set_is_unknown_not_empty(with_set, fresh_mobile):
    services = await with_set()
    mobile = fresh_mobile()
    await services.users.create(mobile, mobile, PASSWORD_HASH)
    await services.redis.delete(keys.registered_set_key())  # the marker survived
    assert await services.users.known_registered(mobile) is None
    assert await services.users.known_registered(fresh_mobile()) is None
    await async_wait_until(
        lambda: services.users.known_registered(mobile),
        lambda known: known is True,
        what="the set rebuilt",
    )


@pytest.mark.gen_test(timeout=30)
async def test_a_deletion_racing_a_rebuild_leaves_no_ready_set_with_its_number(
    with_set, fresh_mobile
):
    services = await with_set()
    mobiles = [fresh_mobile() for _ in range(5)]
    users = [await services.users.create(m, m, PASSWORD_HASH) for m in mobiles]
    # A rebuild of two rows a batch, on the same keys; the marker gone (as after a flush).
    rebuilding = RegisteredMobiles(
        services.redis, services.db, services.users.table, batch=2, retry_pause=0
    )
    await services.redis.delete(keys.registered_ready_key())
    purged = []

    async def purge_the_first_once() -> None:
        # The first batch (users 0 and 1) is read from MySQL and not yet added: now the
        # first account's number is released.
        if not purged:
            purged.append(users[0].user_id)
            await purge(services, users[0].user_id)

    rebuilding.after_read = purge_the_first_once
    assert await rebuilding.rebuild() is Rebuild.RACED
    # Its first batch added the released number after all, but the set is not marked ready,
    # so nobody reads it: answers stay unknown (MySQL) until a rebuild nothing raced.
    assert await services.redis.sismember(keys.registered_set_key(), mobiles[0])
    assert not await services.redis.exists(keys.registered_ready_key())

    rebuilding.after_read = None
    assert await rebuilding.rebuild() is Rebuild.READY
    assert await rebuilding.registered(mobiles[0]) is False
    assert [await rebuilding.registered(m) for m in mobiles[1:]] == [True] * 4


@pytest.mark.gen_test(timeout=120)
async def test_a_hand_edit_racing_a_rebuild_is_forgotten_with_the_operator_command(
    with_set, fresh_mobile
):
    """A DBA deletes a row by hand while a rebuild is under way, after it read that row;
    `tools.accounts forget-registered` (as docs/SECURITY.md says) must keep that rebuild from
    marking its set ready. A bare DEL of the marker would not: the rebuild would finish ready
    with the deleted number in it, a false "registered" for a day."""
    services = await with_set()
    mobiles = [fresh_mobile() for _ in range(3)]
    users = [await services.users.create(m, m, PASSWORD_HASH) for m in mobiles]
    rebuilding = RegisteredMobiles(
        services.redis, services.db, services.users.table, batch=2, retry_pause=0
    )
    await services.redis.delete(keys.registered_ready_key())
    edited = []

    async def hand_edit_once() -> None:
        if not edited:  # the first batch is read: the DBA deletes its first row, then says so
            edited.append(True)
            await services.db.execute(
                f"DELETE FROM {services.users.table.table} WHERE id = %s", (users[0].user_id,)
            )
            await operator_command(services.config, "tools.accounts", "forget-registered")

    rebuilding.after_read = hand_edit_once
    assert await rebuilding.rebuild() is Rebuild.RACED
    assert not await services.redis.exists(keys.registered_ready_key())
    rebuilding.after_read = None
    assert await rebuilding.rebuild() is Rebuild.READY
    assert await rebuilding.registered(mobiles[0]) is False


@pytest.mark.gen_test(timeout=30)
async def test_one_rebuild_at_a_time(with_set):
    services = await with_set()
    first = RegisteredMobiles(services.redis, services.db, services.users.table, retry_pause=0)
    second = RegisteredMobiles(services.redis, services.db, services.users.table, retry_pause=0)
    assert await first.rebuild() is Rebuild.SKIPPED  # ready already
    await services.redis.delete(keys.registered_ready_key())
    answers = []

    async def the_other_tries() -> None:
        answers.append(await second.rebuild())

    first.after_read = the_other_tries
    await services.users.create("13800000001", "13800000001", PASSWORD_HASH)
    assert await first.rebuild() is Rebuild.READY
    assert answers == [Rebuild.SKIPPED]


# --- where the set is not used ------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_host_app_deployment_never_uses_the_set(
    make_services, sandbox, config, fresh_mobile
):
    host = {"kind": "ihome", "redis_url": config.redis.url, "secret_key": "k" * 32}
    services = await make_services(**ON, host_app=host)
    assert services.users.registered is None
    # A set that would lie, ready: the host app's own INSERT is not in it.
    mobile = fresh_mobile()
    await services.db.execute(
        "INSERT INTO ih_user_profile (name, password_hash, mobile) VALUES (%s, 'x', %s)",
        (mobile, mobile),
    )
    await services.redis.sadd(keys.registered_set_key(), "", fresh_mobile())
    await services.redis.set(keys.registered_ready_key(), "forged")
    assert await services.users.known_registered(mobile) is None
    refused = await refusal(send_code(services, mobile))
    assert refused.ret == Ret.DATAEXIST


# --- the point: no SELECT for a send ----------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_register_send_runs_no_select_once_the_set_is_ready(
    make_services, redis_mode, mariadb_server, sandbox, fresh_mobile
):
    plain = await make_services(**redis_mode, accounts={"registered_set": False})
    mobile = fresh_mobile()
    before = await com_select(mariadb_server)
    await send_code(plain, mobile, captcha_id="plain")
    assert await com_select(mariadb_server) - before >= 1  # today's SELECT

    services = await make_services(**redis_mode, **ON)
    await until_ready(services)
    sends = [fresh_mobile() for _ in range(3)]
    before = await com_select(mariadb_server)
    for index, each in enumerate(sends):
        await send_code(services, each, captcha_id=f"set{index}")
    assert await com_select(mariadb_server) - before == 0
    assert all(len(sandbox.inbox(each)) == 1 for each in sends)


@pytest.mark.gen_test(timeout=60)
async def test_on_standalone_the_reservation_script_reads_the_set_too(
    with_set, mariadb_server, sandbox, fresh_mobile, monkeypatch
):
    """Standalone: the one script that reserves a send also reads the set of registered
    numbers, so a register send is two Redis round trips (the reservation, then the send's
    records) and no SELECT; a registered number is refused the same way, before any SMS."""
    services = await with_set()
    taken = fresh_mobile()
    await services.users.create(taken, taken, PASSWORD_HASH)
    # Loads the scripts (a first EVALSHA is followed by SCRIPT LOAD and EVALSHA again).
    await send_code(services, fresh_mobile(), captcha_id="warm-up")
    await refusal(send_code(services, taken, captcha_id="warm-up-refused"))
    trips = RoundTrips(monkeypatch)
    free = fresh_mobile()
    captcha = await solved_captcha(services, "counted", CLIENT_IP)
    selects = await com_select(mariadb_server)
    sent_trips, _ = await trips.of(services.sms.send_code(free, captcha, "counted", CLIENT_IP))
    assert sent_trips == 2 and len(sandbox.inbox(free)) == 1
    captcha = await solved_captcha(services, "refused", CLIENT_IP)
    refused_trips, refused = await trips.of(
        refusal(services.sms.send_code(taken, captcha, "refused", CLIENT_IP))
    )
    assert refused.ret == Ret.DATAEXIST and sandbox.inbox(taken) == []
    assert refused_trips == 2  # the reservation, and its give-back
    assert await com_select(mariadb_server) == selects
