"""A browser of the meiduo host app and our server in one (tests/test_host_bridge_meiduo.py):
one `requests` session for both, as cookies are kept per host name, and the requests meiduo's
front-end and our JSON API make; and the session records an attacker or a host could write."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import uuid

import redis

from services.store import keys
from tests.flows import last_code
from tests.hostapps.harness import DJANGO_AUTH_BACKEND, HostApp, HostClient
from tests.threaded_server import ThreadedServer

PASSWORD = "password123"  # meiduo's login wants ^[0-9A-Za-z]{8,20}$
NEW_PASSWORD = "newpass4567"
LOGGED_OUT = {"errno": "4101", "errmsg": "false"}


class Visitor:
    """A browser that visits the meiduo host and our server (same cookies for both)."""

    def __init__(self, host: HostApp, ours: ThreadedServer, sandbox) -> None:
        self.host, self.ours, self.sandbox = host, ours, sandbox
        self.http: HostClient = host.client()
        self.our_redis = redis.Redis.from_url(ours.config.redis.url, decode_responses=True)

    def get(self, path: str, **kwargs):
        return self.http.get(self.ours.base_url + path, **kwargs)

    def post_form(self, path: str, fields: dict[str, str], headers=None):
        """A native form post to us, with the CSRF token as meiduo's {{ csrf_input }} has it."""
        token = {"csrfmiddlewaretoken": self.http.cookies["csrftoken"]} if not headers else {}
        return self.http.post(self.ours.base_url + path, data={**token, **fields}, headers=headers)

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        """An ihome-style JSON call (AJAX: Django's CSRF cookie in X-CSRFToken)."""
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        response = self.http.request(method, self.ours.base_url + path, json=body, headers=headers)
        assert response.headers["Content-Type"].startswith("application/json"), response.text
        return response.json()

    def session(self) -> dict:
        """Our GET /api/v1.0/session: who we say is logged in."""
        return self.get("/api/v1.0/session").json()

    def captcha(self, meiduo: bool = True) -> tuple[str, str]:
        """A CAPTCHA image fetched from us, and its text (read from our Redis)."""
        image_id = str(uuid.uuid4())
        path = f"/image_codes/{image_id}/" if meiduo else f"/api/v1.0/image_codes/{image_id}"
        assert self.get(path).status_code == 200
        return image_id, self.our_redis.get(keys.captcha_key(image_id))

    def register_code(self, mobile: str) -> str:
        """meiduo's register.js: the CAPTCHA, then GET /sms_codes/<mobile>/; the code as the
        phone receives it."""
        image_id, text = self.captcha()
        sent = self.get(f"/sms_codes/{mobile}/", params={"image_code": text, "uuid": image_id})
        assert sent.json()["code"] == "0", sent.text
        return last_code(self.sandbox, mobile)

    def code_for(self, mobile: str, purpose: str) -> str:
        """POST /api/v1.0/sms_codes with a purpose (reset_password, change_mobile), the
        resend interval of an earlier code to the number passed (its guard deleted)."""
        self.our_redis.delete(keys.sms_guard_key(mobile))
        image_id, text = self.captcha(meiduo=False)
        body = {"mobile": mobile, "image_code": text, "image_code_id": image_id}
        answer = self.json("POST", "/api/v1.0/sms_codes", {**body, "purpose": purpose})
        assert answer["errno"] == "0", answer
        return last_code(self.sandbox, mobile)

    def register(self, mobile: str, username: str):
        """meiduo's register form, posted to us."""
        form = {
            "username": username,
            "password": PASSWORD,
            "password2": PASSWORD,
            "mobile": mobile,
            "sms_code": self.register_code(mobile),
            "allow": "on",
        }
        return self.post_form("/register/", form)

    def close(self) -> None:
        self.http.close()
        self.our_redis.close()


def registered(visitor, fresh_mobile) -> tuple[Visitor, str, str]:
    """A browser that registered through us: (the browser, its mobile, its username)."""
    browser = visitor()
    mobile = fresh_mobile()
    username = f"user_{mobile[-6:]}"
    answer = browser.register(mobile, username)
    assert (answer.status_code, answer.headers.get("Location")) == (302, "/"), answer.text
    return browser, mobile, username


def stored_password(host: HostApp, mobile: str) -> str:
    with contextlib.closing(host.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT password FROM tb_users WHERE mobile = %s", (mobile,))
        return cur.fetchone()[0]


class Planted:
    """What an attacker with write access to meiduo's Redis could plant: os.system on load."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def plant_session(host: HostApp, record_bytes: bytes) -> str:
    """A session record written straight into meiduo's Redis; returns its cookie value."""
    key = uuid.uuid4().hex  # 32 of [a-z0-9], a Django session key
    with host.redis() as client:
        client.set(host.session_store_key(key), record_bytes, ex=600)
    return key


def auth_record(host: HostApp, user_id: int, password_hash: str, **extra) -> dict:
    """The keys django.contrib.auth.login writes (tests/hostapps/README.md)."""
    salt = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
    key = hashlib.sha256((salt + host.secret_key).encode()).digest()
    digest = hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()
    return {
        "_auth_user_id": str(user_id),
        "_auth_user_backend": DJANGO_AUTH_BACKEND,
        "_auth_user_hash": digest,
        **extra,
    }
