"""The tutorial host apps alone (tests/hostapps/README.md): each logs in its own users, shows
them, checks its own CSRF token and logs them out; and what each stores is exactly what the
README says, down to a session written by hand that the host then accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
import re
import secrets
import subprocess
import sys

import argon2
import msgspec
import pytest
from itsdangerous import URLSafeTimedSerializer
from werkzeug.security import generate_password_hash

from tests.hostapps.harness import KINDS, MEIDUO_PROJECT, HostApp

MOBILE = "13800138000"
PASSWORD = "password123"  # meiduo's login wants ^[0-9A-Za-z]{8,20}$
MEIDUO_USERNAME = "host_user1"
DJANGO_AUTH_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"


@pytest.fixture(params=sorted(KINDS))
def host(request, start_host_app) -> HostApp:
    return start_host_app(request.param, secret_key=f"{request.param}-{secrets.token_hex(8)}")


def create_user(host: HostApp) -> int:
    name = MEIDUO_USERNAME if host.kind.name == "meiduo" else None
    return host.create_user(MOBILE, PASSWORD, name)


def logged_in(host: HostApp, account: str = MOBILE):
    """A client that the host's own login has logged in (meiduo: by mobile, its backend)."""
    client = host.client()
    response = host.login(client, account, PASSWORD)
    if host.kind.name == "meiduo":
        assert response.status_code == 302, response.text
        assert response.headers["Location"] == "/host/info/"
    else:
        assert response.json() == {"errno": "0", "errmsg": "登录成功"}
    return client


def test_own_login_shows_the_user_until_logout(host):
    user_id = create_user(host)
    client = host.client()
    assert host.whoami(client) is None

    client = logged_in(host)
    me = host.whoami(client)
    if host.kind.name == "meiduo":
        assert (me["id"], me["username"], me["mobile"]) == (user_id, MEIDUO_USERNAME, MOBILE)
        assert client.cookies["username"] == MEIDUO_USERNAME
    else:
        name = "name" if host.kind.name == "ihome" else "nick_name"
        assert me["session"] == {"user_id": user_id, name: MOBILE, "mobile": MOBILE}
        user_key = "user_id" if host.kind.name == "ihome" else "id"
        assert (me["user"][user_key], me["user"][name], me["user"]["mobile"]) == (
            user_id,
            MOBILE,
            MOBILE,
        )

    cookie = client.cookies[host.kind.session_cookie]
    host.logout(client)
    assert host.whoami(client) is None
    # What logout leaves in the store (README): ihome and news keep the CSRF token.
    if host.kind.name == "meiduo":
        assert host.stored_session(cookie) is None
        assert "username" not in client.cookies and "sessionid" not in client.cookies
    else:
        left = host.stored_session(cookie)
        assert set(left) == (
            {"_permanent", "csrf_token"} if host.kind.permanent_session else {"csrf_token"}
        )


def test_a_wrong_password_logs_nobody_in(host):
    create_user(host)
    client = host.client()
    response = host.login(client, MOBILE, "wrongpass1")
    if host.kind.name == "meiduo":
        assert response.status_code == 200 and "用户名或密码错误" in response.text
    else:
        assert response.json()["errno"] in ("4004", "4106")
    assert host.whoami(client) is None


def test_the_csrf_form_wants_the_hosts_token(host):
    client = host.client()
    path = "/host/form/" if host.kind.name == "meiduo" else "/host/form"
    field = "csrfmiddlewaretoken" if host.kind.name == "meiduo" else "csrf_token"
    refused = 403 if host.kind.name == "meiduo" else 400

    token = host.csrf_token(client)
    assert client.post(path, data={}).status_code == refused
    assert client.post(path, data={field: token[:-2] + "xx"}).status_code == refused
    accepted = client.post(path, data={field: token})
    assert (accepted.status_code, accepted.text) == (200, "ok")
    # The front-ends' way: the token from the CSRF cookie in the X-CSRFToken header.
    header = client.post(path, headers={"X-CSRFToken": client.cookies[host.kind.csrf_cookie]})
    assert (header.status_code, header.text) == (200, "ok")
    # Another client's token is not this session's.
    assert host.client().post(path, data={field: token}).status_code == refused


def test_check_password_verifies_the_hosts_own_hash(host):
    create_user(host)
    account = MEIDUO_USERNAME if host.kind.name == "meiduo" else MOBILE
    right = host.check_password(account, PASSWORD)
    assert right["ok"] is True
    assert host.check_password(account, "wrongpass1")["ok"] is False
    if host.kind.name == "meiduo":
        assert re.fullmatch(
            r"pbkdf2_sha256\$1000000\$[A-Za-z0-9]{22}\$[A-Za-z0-9+/]{43}=", right["hash"]
        )
        assert right["must_update"] is False
    else:
        assert re.fullmatch(r"pbkdf2:sha256:50000\$[A-Za-z0-9]{16}\$[0-9a-f]{64}", right["hash"])


# -- What each host stores (README), and a session written by hand that the host accepts --------


def flask_signature(secret_key: str, sid: str) -> str:
    """Flask-Session's cookie signature without itsdangerous (README)."""
    key = hmac.new(secret_key.encode(), b"flask-session", hashlib.sha1).digest()
    mac = hmac.new(key, sid.encode(), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def django_auth_hash(secret_key: str, password_hash: str) -> str:
    """_auth_user_hash without Django (README): salted_hmac(..., algorithm="sha256")."""
    key = hashlib.sha256((DJANGO_AUTH_HASH_SALT + secret_key).encode()).digest()
    return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()


def password_hash(host: HostApp) -> str:
    return host.check_password(MOBILE, PASSWORD)["hash"]


@pytest.mark.parametrize("kind", ["ihome", "news"])
def test_what_a_flask_host_stores(start_host_app, kind):
    host = start_host_app(kind)
    user_id = create_user(host)
    client = logged_in(host)

    cookie = client.cookies["session"]
    sid, signature = cookie.split(".")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sid)
    assert signature == flask_signature(host.secret_key, sid)
    session_cookie = next(c for c in client.cookies if c.name == "session")
    assert session_cookie.has_nonstandard_attr("HttpOnly")
    assert (session_cookie.expires is not None) == host.kind.permanent_session

    with host.redis() as redis:
        raw = redis.get(f"session:{sid}")
        ttl = redis.ttl(f"session:{sid}")
    assert host.kind.session_lifetime - 60 < ttl <= host.kind.session_lifetime
    stored = msgspec.msgpack.decode(raw)
    names = {"ihome": ("name", "mobile", "user_id"), "news": ("user_id", "mobile", "nick_name")}
    login_keys = {key: user_id if key == "user_id" else MOBILE for key in names[kind]}
    permanent = {"_permanent": True} if kind == "ihome" else {}
    # The order is the insertion order: the CSRF token came first, with the login page.
    assert list(stored.items()) == [
        *permanent.items(),
        ("csrf_token", stored["csrf_token"]),
        *login_keys.items(),
    ]
    assert re.fullmatch(r"[0-9a-f]{40}", stored["csrf_token"])
    # The csrf_token cookie is the session's raw token, signed by Flask-WTF.
    serializer = URLSafeTimedSerializer(host.secret_key, salt="wtf-csrf-token")
    assert serializer.loads(client.cookies["csrf_token"], max_age=3600) == stored["csrf_token"]


@pytest.mark.parametrize("kind", ["ihome", "news"])
def test_a_flask_host_accepts_a_session_written_by_hand(start_host_app, kind):
    """In each format Flask-Session 0.8 reads: msgpack (what it writes), json and pickle."""
    host = start_host_app(kind)
    user_id = create_user(host)
    name = "name" if kind == "ihome" else "nick_name"
    session = {"user_id": user_id, name: MOBILE, "mobile": MOBILE}
    if host.kind.permanent_session:
        session = {"_permanent": True, **session}
    for encode in (msgspec.msgpack.encode, msgspec.json.encode, pickle.dumps):
        sid = secrets.token_urlsafe(32)
        with host.redis() as redis:
            redis.set(f"session:{sid}", encode(session), ex=host.kind.session_lifetime)

        client = host.client()
        client.cookies.set("session", f"{sid}.{flask_signature(host.secret_key, sid)}")
        me = host.whoami(client)
        assert me["session"] == {"user_id": user_id, name: MOBILE, "mobile": MOBILE}, encode
        # The host writes back what it read, as msgpack (SESSION_REFRESH_EACH_REQUEST, Flask's
        # default, rewrites it on every request); news adds its CSRF token (after_request).
        with host.redis() as redis:
            rewritten = msgspec.msgpack.decode(redis.get(f"session:{sid}"))
        assert rewritten.items() >= session.items()
        assert set(rewritten) - set(session) == (set() if kind == "ihome" else {"csrf_token"})

        forged = host.client()
        forged.cookies.set("session", f"{sid}.{flask_signature('another key', sid)}")
        assert host.whoami(forged) is None


def test_what_meiduo_stores(start_host_app):
    host = start_host_app("meiduo")
    user_id = create_user(host)
    client = host.client()
    client.get("/host/login/")
    anonymous_csrf = client.cookies["csrftoken"]
    client = logged_in(host)
    assert client.cookies["csrftoken"] != anonymous_csrf  # login() rotates the CSRF secret

    key = client.cookies["sessionid"]
    assert re.fullmatch(r"[a-z0-9]{32}", key)
    with host.redis() as redis:
        raw = redis.get(f":1:django.contrib.sessions.cache{key}")
        ttl = redis.ttl(f":1:django.contrib.sessions.cache{key}")
    assert raw.startswith(b"\x80\x04")  # pickle protocol 4 (pickle.DEFAULT_PROTOCOL)
    assert 1209600 - 60 < ttl <= 1209600
    assert pickle.loads(raw) == {
        "_auth_user_id": str(user_id),
        "_auth_user_backend": "users.utils.UsernameMobileAuthBackend",
        "_auth_user_hash": django_auth_hash(host.secret_key, password_hash(host)),
    }
    cookies = {c.name: c for c in client.cookies}
    assert cookies["sessionid"].has_nonstandard_attr("HttpOnly")
    assert not cookies["username"].has_nonstandard_attr("HttpOnly")
    assert re.fullmatch(r"[A-Za-z0-9]{32}", client.cookies["csrftoken"])


def test_meiduo_without_remembered_keeps_the_session_for_the_browser_only(start_host_app):
    host = start_host_app("meiduo")
    create_user(host)
    client = host.client()
    host.login(client, MOBILE, PASSWORD, remembered=False)
    cookies = {c.name: c for c in client.cookies}
    assert cookies["sessionid"].expires is None
    key = client.cookies["sessionid"]
    with host.redis() as redis:
        stored = pickle.loads(redis.get(f":1:django.contrib.sessions.cache{key}"))
        assert redis.ttl(f":1:django.contrib.sessions.cache{key}") > 1209600 - 60
    assert stored["_session_expiry"] == 0


def test_meiduo_accepts_a_session_written_by_hand(start_host_app):
    host = start_host_app("meiduo")
    user_id = create_user(host)
    session = {
        "_auth_user_id": str(user_id),
        "_auth_user_backend": "users.utils.UsernameMobileAuthBackend",
        "_auth_user_hash": django_auth_hash(host.secret_key, password_hash(host)),
    }
    key = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
    with host.redis() as redis:
        redis.set(f":1:django.contrib.sessions.cache{key}", pickle.dumps(session), ex=1209600)
    client = host.client()
    client.cookies.set("sessionid", key)
    assert host.whoami(client)["id"] == user_id

    # An inactive user is nobody (ModelBackend.get_user), whatever the session holds.
    with host.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE tb_users SET is_active = 0")
        assert host.whoami(client) is None
        cur.execute("UPDATE tb_users SET is_active = 1")
    assert host.whoami(client)["id"] == user_id

    # A hash from another SECRET_KEY (or an older password) is no session: Django flushes it.
    with host.redis() as redis:
        stale = {**session, "_auth_user_hash": django_auth_hash("another key", password_hash(host))}
        redis.set(f":1:django.contrib.sessions.cache{key}", pickle.dumps(stale), ex=1209600)
    assert host.whoami(client) is None


def test_flask_hosts_accept_a_legacy_werkzeug_hash_written_in_their_table(start_host_app):
    for kind in ("ihome", "news"):
        host = start_host_app(kind)
        create_user(host)
        legacy = generate_password_hash("legacy1234", "pbkdf2:sha256:50000")
        with host.connect() as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE {host.kind.user_table} SET password_hash = %s", (legacy,))
        assert host.check_password(MOBILE, "legacy1234") == {"ok": True, "hash": legacy}
        client = host.client()
        assert host.login(client, MOBILE, "legacy1234").json()["errno"] == "0"
        assert password_hash(host) == legacy  # Flask apps never rehash


def test_meiduo_rehashes_an_argon2_hash_at_its_own_login(start_host_app):
    """Django verifies `argon2$argon2id$...` and, since PBKDF2 is PASSWORD_HASHERS[0],
    replaces it at the next login through Django: _auth_user_hash changes with it."""
    host = start_host_app("meiduo")
    create_user(host)
    ours = "argon2" + argon2.PasswordHasher().hash(PASSWORD)
    with host.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE tb_users SET password = %s", (ours,))
    assert host.check_password(MOBILE, PASSWORD) == {"ok": True, "hash": ours, "must_update": True}

    client = logged_in(host)
    rehashed = password_hash(host)
    assert rehashed.startswith("pbkdf2_sha256$1000000$")
    stored = host.stored_session(client.cookies["sessionid"])
    assert stored["_auth_user_hash"] == django_auth_hash(host.secret_key, rehashed)


def test_meiduos_committed_migration_matches_its_models(mariadb_server, redis_server):
    """users/migrations/ is what makemigrations writes for users/models.py."""
    url = f"redis://127.0.0.1:{redis_server.port}/1"
    env = {
        **os.environ,
        "HOSTAPP_SECRET_KEY": "makemigrations",
        "HOSTAPP_MYSQL_PORT": str(mariadb_server.port),
        "HOSTAPP_MYSQL_USER": mariadb_server.user,
        "HOSTAPP_MYSQL_PASSWORD": mariadb_server.password,
        "HOSTAPP_MYSQL_DATABASE": mariadb_server.database,
        "HOSTAPP_REDIS_URL": url,
        "HOSTAPP_REDIS_CACHE_URL": url,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run", "users"],
        cwd=MEIDUO_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
