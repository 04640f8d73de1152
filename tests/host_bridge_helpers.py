"""Our server as a process in front of a tutorial host app (tests/hostapps/), and a browser-like
client that speaks to both: one cookie jar per host name, as a browser keeps it, so each side
sees the cookies the other sets (tests/test_host_bridge_*.py)."""

from __future__ import annotations

import contextlib
import uuid

import redis as sync_redis

from services.store import keys
from tests.conftest import LiveServer
from tests.flows import last_code

PASSWORD = "password123"
NEW_PASSWORD = "password456"


@contextlib.contextmanager
def our_server(config, host, tmp_path, **env: str):
    """server.py with the host's host_app settings, on its database, beside the host."""
    server = LiveServer(config, tmp_path / "ours.log", {**host.server_env(), **env}).start()
    try:
        yield server
    finally:
        server.stop()


class Browser:
    """A requests.Session on the host app (relative paths) that also speaks to our server."""

    def __init__(self, host, ours, config, sandbox) -> None:
        self.http = host.client()
        self.host = host
        self.ours = ours
        self.redis_url = config.redis.url
        self.sandbox = sandbox

    def get(self, path: str, **kwargs):
        return self.http.get(self.ours.base_url + path, **kwargs)

    def send(self, method: str, path: str, **kwargs):
        headers = {"X-CSRFToken": self.cookie("csrf_token") or "", **kwargs.pop("headers", {})}
        return self.http.request(method, self.ours.base_url + path, headers=headers, **kwargs)

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        if method == "GET":
            return self.get(path).json()
        return self.send(method, path, json=body).json()

    def keep_cookies_of(self, response) -> None:
        """Apply what an answer received elsewhere sets or clears, as the browser would."""
        assert response.ok, response.status_code
        for header in response.raw.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            value, *attributes = rest.split(";")
            cleared = not value or any(
                a.strip().lower() in ("max-age=0", "expires=thu, 01 jan 1970 00:00:00 gmt")
                for a in attributes
            )
            jar = self.http.cookies
            for cookie in [c for c in jar if c.name == name]:
                jar.clear(cookie.domain, cookie.path, cookie.name)
            if not cleared:
                jar.set(name, value, domain="127.0.0.1", path="/")

    def cookie(self, name: str) -> str | None:
        return self.http.cookies.get(name)

    def captcha(self) -> tuple[str, str]:
        """A new CAPTCHA of ours and its text (read from our Redis by its documented key)."""
        captcha_id = str(uuid.uuid4())
        assert self.get(f"/api/v1.0/image_codes/{captcha_id}").status_code == 200
        with sync_redis.Redis.from_url(self.redis_url, decode_responses=True) as redis:
            return captcha_id, redis.get(keys.captcha_key(captcha_id))

    def code(self, mobile: str, purpose: str = "register") -> str:
        """A code of ours for `purpose`, read from the phone (the sandbox's inbox)."""
        captcha_id, text = self.captcha()
        body = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id}
        answer = self.json("POST", "/api/v1.0/sms_codes", {**body, "purpose": purpose})
        assert answer["errno"] == "0", answer
        return last_code(self.sandbox, mobile)

    def register(self, mobile: str, password: str = PASSWORD) -> dict:
        """ihome's register through us (news's front-end posts the same to /passport/)."""
        code = self.code(mobile)
        body = {"mobile": mobile, "sms_code": code, "password": password, "password2": password}
        return self.json("POST", "/api/v1.0/users", body)

    def login(self, mobile: str, password: str = PASSWORD) -> dict:
        return self.json("POST", "/api/v1.0/sessions", {"mobile": mobile, "password": password})

    def logged_in_as(self) -> str | None:
        """Our session check: the name of who is logged in, or None."""
        answer = self.json("GET", "/api/v1.0/session")
        return answer["data"]["name"] if answer["errno"] == "0" else None

    def host_sees(self) -> dict | None:
        """Who the host app's protected page says is logged in: {user_id, mobile, ...} of its
        user row (and the session's keys for the Flask apps), or None."""
        seen = self.host.whoami(self.http)
        if seen is None or "user" not in seen:
            return seen
        user = seen["user"]
        return {**user, "user_id": user.get("user_id", user.get("id")), "session": seen["session"]}
