"""meiduo as the host app (issue 21): our server on meiduo's `tb_users`, Django's cache sessions
and CSRF cookie, beside the real Django app of tests/hostapps/ (meiduo_host). One `requests`
session plays the browser for both (cookies are kept per host name, as a browser keeps them:
both listen on 127.0.0.1), speaking to us through meiduo's own routes (the register and login
forms, GET /logout/) and the JSON session check every family shares."""

from __future__ import annotations

import contextlib
import os
import pickle
import uuid

import pytest

from tests.flows import run_server
from tests.meiduo_visitor import (
    LOGGED_OUT,
    NEW_PASSWORD,
    PASSWORD,
    Planted,
    Visitor,
    auth_record,
    plant_session,
    registered,
    stored_password,
)
from tests.threaded_server import ThreadedServer


@pytest.fixture
def ours(config, clean_state, meiduo_host):
    """Our server with meiduo's host_app section, on meiduo's database."""
    with ThreadedServer(config.replace(**meiduo_host.server_config())) as server:
        yield server


@pytest.fixture
def visitor(meiduo_host, ours, sandbox):
    """Opens browsers on meiduo and us; visitor() is a new one, with no cookies."""
    opened: list[Visitor] = []

    def open_visitor() -> Visitor:
        opened.append(Visitor(meiduo_host, ours, sandbox))
        return opened[-1]

    yield open_visitor
    for each in opened:
        each.close()


# --- both ways: a login through us is one in meiduo, and meiduo's is one for us ---------------


def test_register_through_us_is_a_login_in_meiduo(meiduo_host, visitor, fresh_mobile):
    browser, mobile, username = registered(visitor, fresh_mobile)

    me = meiduo_host.whoami(browser.http)  # request.user, through LoginRequiredMixin
    assert (me["username"], me["mobile"]) == (username, mobile)
    assert browser.http.cookies["username"] == username  # meiduo's header greeting
    assert browser.session() == {"errno": "0", "errmsg": "true", "data": {"name": username}}
    # The hash is Django's own argon2 format, in Django's own table.
    assert stored_password(meiduo_host, mobile).startswith("argon2$argon2id$")


def test_djangos_own_login_accepts_a_user_we_registered(meiduo_host, visitor, fresh_mobile):
    ours, mobile, username = registered(visitor, fresh_mobile)
    checked = meiduo_host.check_password(username, PASSWORD)
    assert checked["ok"] is True and checked["hash"].startswith("argon2$argon2id$")
    assert meiduo_host.check_password(mobile, "wrongpass1")["ok"] is False

    browser = visitor()
    answer = meiduo_host.login(browser.http, mobile, PASSWORD)  # authenticate() + login()
    assert (answer.status_code, answer.headers["Location"]) == (302, "/host/info/")
    assert meiduo_host.whoami(browser.http)["username"] == username
    assert browser.session()["data"] == {"name": username}
    # Django's default PASSWORD_HASHERS put PBKDF2 first: its login rewrote our argon2 hash,
    # and the session auth hash of every earlier session with it (docs/INTEGRATION.md).
    assert stored_password(meiduo_host, mobile).startswith("pbkdf2_sha256$")
    assert meiduo_host.whoami(ours.http) is None
    assert ours.session() == LOGGED_OUT
    # Our login still takes the password, now in Django's PBKDF2.
    assert ours.post_form("/login/", {"username": mobile, "password": PASSWORD}).status_code == 302
    assert meiduo_host.whoami(ours.http)["username"] == username


def test_djangos_own_login_is_a_login_for_us(meiduo_host, visitor, fresh_mobile):
    mobile = fresh_mobile()
    meiduo_host.create_user(mobile, PASSWORD, name="host_made")
    browser = visitor()
    assert browser.session() == LOGGED_OUT

    meiduo_host.login(browser.http, "host_made", PASSWORD)
    assert browser.session() == {"errno": "0", "errmsg": "true", "data": {"name": "host_made"}}
    assert browser.json("GET", "/api/v1.0/user")["data"]["mobile"] == mobile


def test_logout_in_meiduo_is_a_logout_for_us(meiduo_host, visitor, fresh_mobile):
    browser, _, _ = registered(visitor, fresh_mobile)
    meiduo_host.logout(browser.http)
    assert meiduo_host.whoami(browser.http) is None
    assert browser.session() == LOGGED_OUT


def test_logout_through_us_ends_the_meiduo_session(meiduo_host, visitor, fresh_mobile):
    browser, _, _ = registered(visitor, fresh_mobile)
    host_session = browser.http.cookies["sessionid"]

    answer = browser.get("/logout/")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/")
    assert meiduo_host.stored_session(host_session) is None  # flushed, as Django's logout
    for cookie in ("sessionid", "username", "smsreg_session"):
        assert cookie not in browser.http.cookies
    assert meiduo_host.whoami(browser.http) is None
    # The cookie a copy of the browser would still send opens nothing either.
    replay = visitor()
    replay.http.cookies.set("sessionid", host_session)
    assert meiduo_host.whoami(replay.http) is None
    assert replay.session() == LOGGED_OUT


# --- ending every session of a user ends its meiduo sessions -------------------------------


def test_password_reset_through_us_ends_the_users_meiduo_sessions(
    meiduo_host, visitor, fresh_mobile
):
    mobile, username = fresh_mobile(), "host_made"
    meiduo_host.create_user(mobile, PASSWORD, name=username)  # the reset code is its first SMS
    ours = visitor()
    ours.get(f"/image_codes/{uuid.uuid4()}/")  # a page of ours gave it Django's CSRF cookie
    assert ours.post_form("/login/", {"username": mobile, "password": PASSWORD}).status_code == 302
    elsewhere = visitor()
    meiduo_host.login(elsewhere.http, mobile, PASSWORD)
    elsewhere_session = elsewhere.http.cookies["sessionid"]

    resetting = visitor()
    body = {"mobile": mobile, "sms_code": resetting.code_for(mobile, "reset_password")}
    body |= {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    answer = resetting.json("POST", "/api/v1.0/password_reset", body)
    assert answer == {"errno": "0", "errmsg": "密码已重置"}

    # Not only refused for the changed hash: the records themselves are gone.
    assert meiduo_host.stored_session(elsewhere_session) is None
    for browser in (ours, elsewhere):
        assert meiduo_host.whoami(browser.http) is None
        assert browser.session() == LOGGED_OUT
    assert meiduo_host.whoami(resetting.http)["username"] == username  # logged in after
    assert meiduo_host.check_password(username, NEW_PASSWORD)["ok"] is True


def test_password_change_through_us_keeps_the_caller_logged_in_in_meiduo(
    meiduo_host, visitor, fresh_mobile
):
    ours, _, username = registered(visitor, fresh_mobile)
    body = {"old_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert ours.json("PUT", "/api/v1.0/user/password", body)["errno"] == "0"
    # The new session's auth hash is the new password's, which Django checks.
    assert meiduo_host.whoami(ours.http)["username"] == username
    assert ours.session()["data"] == {"name": username}


def test_number_change_through_us_ends_the_users_other_meiduo_sessions(
    meiduo_host, visitor, fresh_mobile
):
    ours, mobile, username = registered(visitor, fresh_mobile)
    elsewhere = visitor()
    meiduo_host.login(elsewhere.http, username, PASSWORD)
    elsewhere_session = elsewhere.http.cookies["sessionid"]
    # Django's login rehashed the password (PBKDF2): ours is a new login after it.
    assert ours.post_form("/login/", {"username": mobile, "password": PASSWORD}).status_code == 302

    new_mobile = fresh_mobile()
    body = {"mobile": new_mobile, "sms_code": ours.code_for(new_mobile, "change_mobile")}
    answer = ours.json("PUT", "/api/v1.0/user/mobile", {**body, "password": PASSWORD})
    assert answer["errno"] == "0", answer

    # The password is the same: only the sweep of meiduo's sessions ends this one.
    assert meiduo_host.stored_session(elsewhere_session) is None
    assert meiduo_host.whoami(elsewhere.http) is None
    assert elsewhere.session() == LOGGED_OUT
    me = meiduo_host.whoami(ours.http)  # the caller's new session
    assert (me["username"], me["mobile"]) == (username, new_mobile)


# --- CSRF: meiduo's keeps working, and ours takes meiduo's ---------------------------------


def test_meiduos_csrf_works_after_a_login_through_us(meiduo_host, visitor, fresh_mobile):
    browser, _, _ = registered(visitor, fresh_mobile)
    token = meiduo_host.csrf_token(browser.http)  # the masked token of {{ csrf_input }}
    posted = browser.http.post("/host/form/", data={"csrfmiddlewaretoken": token})
    assert (posted.status_code, posted.text) == (200, "ok")
    cookie = browser.http.cookies["csrftoken"]
    posted = browser.http.post("/host/form/", headers={"X-CSRFToken": cookie})
    assert (posted.status_code, posted.text) == (200, "ok")


def test_our_routes_take_djangos_csrf_token(meiduo_host, visitor, fresh_mobile):
    mobile = fresh_mobile()
    meiduo_host.create_user(mobile, PASSWORD)
    browser = visitor()
    masked = meiduo_host.csrf_token(browser.http)  # a page of meiduo's gave the browser one
    assert len(masked) == 64

    login = {"username": mobile, "password": PASSWORD}
    wrong = {"X-CSRFToken": masked[:-1] + ("a" if masked[-1] != "a" else "b")}
    assert browser.post_form("/login/", login, headers=wrong).status_code == 403
    assert "sessionid" not in browser.http.cookies
    # AJAX: the csrftoken cookie in X-CSRFToken; the form field: the masked token.
    ajax = {"X-CSRFToken": browser.http.cookies["csrftoken"]}
    assert browser.post_form("/login/", login, headers=ajax).status_code == 302
    assert browser.json("DELETE", "/api/v1.0/session") == {"errno": "0", "errmsg": "OK"}
    answer = browser.http.post(
        browser.ours.base_url + "/login/", data={**login, "csrfmiddlewaretoken": masked}
    )
    assert answer.status_code == 302
    assert meiduo_host.whoami(browser.http)["mobile"] == mobile


# --- bad input --------------------------------------------------------------------------------


def test_a_session_record_naming_objects_is_refused_and_never_loaded(
    meiduo_host, visitor, fresh_mobile, tmp_path, caplog
):
    mobile = fresh_mobile()
    user_id = meiduo_host.create_user(mobile, PASSWORD)
    marker = tmp_path / "planted-code-ran"
    record = auth_record(meiduo_host, user_id, stored_password(meiduo_host, mobile))
    record["cart"] = Planted(f"touch {marker}")
    browser = visitor()
    browser.http.cookies.set("sessionid", plant_session(meiduo_host, pickle.dumps(record)))

    with caplog.at_level("WARNING", logger="services.hostapp"):
        assert browser.session() == LOGGED_OUT
        assert browser.get("/logout/").status_code == 302
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all(r.levelname == "WARNING" for r in refusals)
    assert "system" in refusals[0].getMessage()  # names what the record wanted to call
    assert not marker.exists()
    # (meiduo itself is not asked: Django would unpickle the record and run the command.)


def test_a_forged_auth_hash_is_nobody(meiduo_host, visitor, fresh_mobile):
    mobile = fresh_mobile()
    user_id = meiduo_host.create_user(mobile, PASSWORD)
    real = auth_record(meiduo_host, user_id, stored_password(meiduo_host, mobile))
    browser = visitor()
    browser.http.cookies.set("sessionid", plant_session(meiduo_host, pickle.dumps(real)))
    assert browser.session()["data"] == {"name": mobile}  # the real thing is a login

    forged = {**real, "_auth_user_hash": auth_record(meiduo_host, user_id, "x")["_auth_user_hash"]}
    browser.http.cookies.set("sessionid", plant_session(meiduo_host, pickle.dumps(forged)))
    assert browser.session() == LOGGED_OUT
    assert meiduo_host.whoami(browser.http) is None  # Django agrees


def test_a_deactivated_user_cannot_log_in_through_us(meiduo_host, visitor, fresh_mobile):
    browser, mobile, _ = registered(visitor, fresh_mobile)
    with contextlib.closing(meiduo_host.connect()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE tb_users SET is_active = 0 WHERE mobile = %s", (mobile,))

    # The session it had is nobody's now, for Django (ModelBackend.get_user) and for us.
    assert meiduo_host.whoami(browser.http) is None
    assert browser.session() == LOGGED_OUT

    other = visitor()
    other.get(f"/image_codes/{uuid.uuid4()}/")  # a page of ours gave it Django's CSRF cookie
    refused = other.post_form("/login/", {"username": mobile, "password": PASSWORD})
    assert refused.status_code == 400 and refused.text == "用户不存在或未激活"
    assert "sessionid" not in other.http.cookies
    assert other.session() == LOGGED_OUT


# --- start-up: the host's table as we need it, or one line and exit 2 ---------------------

TB_USERS_WITHOUT_MOBILE = """CREATE TABLE tb_users (
    id int AUTO_INCREMENT PRIMARY KEY, password varchar(128) NOT NULL,
    last_login datetime(6) NULL, is_superuser tinyint(1) NOT NULL,
    username varchar(150) NOT NULL UNIQUE, first_name varchar(150) NOT NULL,
    last_name varchar(150) NOT NULL, email varchar(254) NOT NULL, is_staff tinyint(1) NOT NULL,
    is_active tinyint(1) NOT NULL, date_joined datetime(6) NOT NULL,
    email_active tinyint(1) NOT NULL)"""


@pytest.mark.parametrize(
    ("tables", "line"),
    [
        ([], "config error: host_app: the host app's user table tb_users does not exist"),
        (
            [TB_USERS_WITHOUT_MOBILE],
            "config error: host_app: the host app's user table tb_users lacks the column(s) mobile",
        ),
        (
            [TB_USERS_WITHOUT_MOBILE, "ALTER TABLE tb_users ADD mobile varchar(11) NOT NULL"],
            "config error: host_app: tb_users.mobile has no UNIQUE index, which decides "
            "concurrent sign-ups; add it: ALTER TABLE tb_users ADD UNIQUE KEY "
            "uq_tb_users_mobile (mobile) (docs/INTEGRATION.md)",
        ),
    ],
    ids=["no-table", "no-mobile", "mobile-not-unique"],
)
def test_start_up_refuses_a_user_table_it_cannot_use(config, mariadb_server, tables, line):
    database = "meiduo_startup_check"
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"GRANT ALL ON {database}.* TO %s@'127.0.0.1'", (mariadb_server.user,))
        for statement in tables:
            cur.execute(f"USE {database}")
            cur.execute(statement)
    env = {
        **os.environ,
        "SMSREG_REDIS_URL": config.redis.url,
        "SMSREG_MYSQL_PORT": str(config.mysql.port),
        "SMSREG_MYSQL_DATABASE": database,
        "SMSREG_HOST_APP_KIND": "meiduo",
        "SMSREG_HOST_APP_REDIS_URL": config.redis.url,
        "SMSREG_HOST_APP_SECRET_KEY": "meiduo-secret-key",
        "SMSREG_HOST_APP_SERIALIZATION": "pickle",
    }
    result = run_server("--port", "0", env=env)
    assert (result.returncode, result.stderr) == (2, line + "\n")
