"""ihome and news as host apps (Flask, Flask-Session, Flask-WTF): our logins are theirs and
theirs are ours, through their real session store and their real CSRF check, with today's
releases of the libraries (tests/hostapps/README.md)."""

from __future__ import annotations

import os
import pickle

import pytest

from tests.host_bridge_helpers import NEW_PASSWORD, PASSWORD, Browser, our_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["ihome", "news"])
def host(request, start_host_app):
    return start_host_app(request.param)


@pytest.fixture
def ours(config, clean_state, host, tmp_path):
    with our_server(config, host, tmp_path) as server:
        yield server


@pytest.fixture
def browser(host, ours, config, sandbox):
    return Browser(host, ours, config, sandbox)


def test_a_registration_through_us_is_a_login_in_the_host_app(browser, host, fresh_mobile):
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    seen = browser.host_sees()
    assert seen is not None and seen["mobile"] == mobile and seen["user_id"]
    # The host's own password check accepts the hash we wrote (Werkzeug's).
    checked = host.check_password(mobile, PASSWORD)
    assert checked["ok"] and checked["hash"].startswith("pbkdf2:sha256:")
    assert not host.check_password(mobile, "wrong-password")["ok"]
    # The host's own forms still post with its CSRF token after our login.
    token = host.csrf_token(browser.http)
    assert browser.http.post(host.base_url + "/host/form", data={"csrf_token": token}).ok


def test_the_host_apps_own_login_is_a_login_here_and_its_logout_too(browser, host, fresh_mobile):
    mobile = fresh_mobile()
    host.create_user(mobile, PASSWORD)
    assert browser.logged_in_as() is None
    assert host.login(browser.http, mobile, PASSWORD).ok
    assert browser.logged_in_as() == mobile  # the host app's session, seen here
    host.logout(browser.http)
    assert browser.host_sees() is None
    assert browser.logged_in_as() is None


def test_a_logout_in_the_host_app_ends_a_login_made_here(browser, host, fresh_mobile):
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    assert browser.logged_in_as() == mobile
    host.logout(browser.http)
    assert browser.logged_in_as() is None
    assert browser.json("GET", "/api/v1.0/user")["errno"] == "4101"


def test_a_logout_here_ends_the_host_session(browser, host, fresh_mobile):
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    assert browser.json("DELETE", "/api/v1.0/session")["errno"] == "0"
    assert browser.host_sees() is None
    assert browser.logged_in_as() is None
    # ihome's logout keeps the CSRF token: the host's forms still work.
    token = host.csrf_token(browser.http)
    assert browser.http.post(host.base_url + "/host/form", data={"csrf_token": token}).ok


def test_a_password_reset_here_ends_every_host_session_of_the_user(
    browser, host, ours, config, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    host.create_user(mobile, PASSWORD)
    elsewhere = Browser(host, ours, config, sandbox)  # another computer, logged in by the host
    assert host.login(elsewhere.http, mobile, PASSWORD).ok
    assert elsewhere.host_sees() is not None
    code = browser.code(mobile, "reset_password")
    body = {"mobile": mobile, "sms_code": code, "password": NEW_PASSWORD}
    assert (
        browser.json("POST", "/api/v1.0/password_reset", {**body, "password2": NEW_PASSWORD})[
            "errno"
        ]
        == "0"
    )
    assert elsewhere.host_sees() is None
    assert elsewhere.logged_in_as() is None
    assert host.check_password(mobile, NEW_PASSWORD)["ok"]


def test_a_number_change_here_ends_the_other_host_sessions(
    browser, host, ours, config, sandbox, fresh_mobile
):
    mobile, new_mobile = fresh_mobile(), fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    elsewhere = Browser(host, ours, config, sandbox)
    assert host.login(elsewhere.http, mobile, PASSWORD).ok
    code = browser.code(new_mobile, "change_mobile")
    body = {"mobile": new_mobile, "sms_code": code, "password": PASSWORD}
    assert browser.json("PUT", "/api/v1.0/user/mobile", body)["errno"] == "0"
    assert elsewhere.host_sees() is None
    assert browser.logged_in_as() is not None  # the browser that changed it stays logged in
    assert browser.host_sees()["mobile"] == new_mobile


def test_a_host_record_that_names_an_object_is_refused_never_run(
    browser, host, ours, fresh_mobile, tmp_path
):
    """Who can write the host's Redis must not run code here: a pickled object is a logged-out
    browser and a WARNING, and the object is never made."""
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    key = host.session_store_key(browser.cookie("session"))
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with host.redis() as redis:
        redis.set(key, pickle.dumps({"user_id": 1, "mobile": mobile, "x": RunsCode()}))
    assert browser.logged_in_as() is None
    assert not marker.exists()
    assert "host session" in ours.log_path.read_text() and "refused" in ours.log_path.read_text()


def test_a_tampered_session_cookie_is_nobody(browser, host, fresh_mobile):
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    sid, _, signature = browser.cookie("session").rpartition(".")
    forged = sid + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    browser.http.cookies.set("session", forged)
    browser.http.cookies.set("smsreg_session", None)
    assert browser.logged_in_as() is None


def test_a_login_here_racing_a_logout_in_the_host_app_leaves_no_half_session(
    browser, host, fresh_mobile
):
    """A login through us and a logout in the host app sent at the same moment, from one
    browser: each request carries the cookies of before, and the answer that arrives last
    sets the cookie the browser keeps. Both orders of arrival are played out exactly (no
    timing): either way we and the host app agree on who is logged in."""
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    for logout_answers_last in (True, False):
        before = browser.http.cookies.copy()
        in_flight = host.client()  # the host logout request, sent with the cookies of before
        in_flight.cookies.update(before)
        if not logout_answers_last:
            browser.keep_cookies_of(host.logout(in_flight))
        assert browser.login(mobile)["errno"] == "0"
        if logout_answers_last:
            browser.keep_cookies_of(host.logout(in_flight))  # its Set-Cookie wins
        ours, theirs = browser.logged_in_as(), browser.host_sees()
        assert (ours is None) == (theirs is None), (logout_answers_last, ours, theirs)


def test_the_tutorial_eras_pickled_records_and_todays_msgpack_both_work(
    config, clean_state, host, sandbox, fresh_mobile, tmp_path
):
    """host_app.serialization pickle, as Flask-Session 0.3 stores sessions: today's
    Flask-Session still reads the pickles we write, and we read the msgpack it writes back."""
    with our_server(config, host, tmp_path, SMSREG_HOST_APP_SERIALIZATION="pickle") as ours:
        browser = Browser(host, ours, config, sandbox)
        mobile = fresh_mobile()
        assert browser.register(mobile)["errno"] == "0"
        key = host.session_store_key(browser.cookie("session"))
        with host.redis() as redis:
            assert redis.get(key).startswith(b"\x80\x02")  # a pickle, protocol 2
        assert browser.host_sees()["mobile"] == mobile
        assert browser.logged_in_as() == mobile
        host.logout(browser.http)
        assert host.login(browser.http, mobile, PASSWORD).ok  # the host writes msgpack now
        assert browser.logged_in_as() == mobile


def test_anonymous_visitors_store_nothing_in_the_host_apps_redis(browser, host):
    """A session per anonymous GET (to hold the host's CSRF token) would let a flood of them
    fill the host's Redis: until the host app or a login makes one, our token is stateless."""
    for path in ("/", "/register.html", "/api/v1.0/session", "/api/v1.0/image_codes/x1"):
        for _ in range(3):
            browser.http.cookies.clear()
            assert browser.get(path).status_code in (200, 404)
    with host.redis() as redis:
        assert redis.dbsize() == 0
    assert browser.cookie("csrf_token")  # ours: our pages' forms still post


def test_logging_out_the_other_devices_ends_their_host_sessions_not_this_one(
    browser, host, ours, config, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    assert browser.register(mobile)["errno"] == "0"
    elsewhere = Browser(host, ours, config, sandbox)
    assert host.login(elsewhere.http, mobile, PASSWORD).ok
    assert browser.json("DELETE", "/api/v1.0/user/sessions")["errno"] == "0"
    assert elsewhere.host_sees() is None
    assert browser.host_sees()["mobile"] == mobile
    assert browser.logged_in_as() == mobile
