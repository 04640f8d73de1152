"""Host apps as subprocesses: ihome and news (Flask) and meiduo (Django), built the way the
tutorials build them (tests/hostapps/README.md), each on its own MariaDB database and Redis db
of the test session's servers, on a free port.

    host = start_host_app("ihome", secret_key="...")   # the fixture in tests/conftest.py
    host.host_app_config()       # our server's `host_app:` section for this host
    host.server_config()         # {"host_app": ..., "mysql": {"database": ...}} for config.replace
    client = host.client()       # a requests.Session on the host (cookies shared by host name)
    host.create_user(mobile, password)      # through the host's own ORM
    host.login(client, mobile, password)    # through the host's own login, with its CSRF token
    host.whoami(client)          # who the host says is logged in (None: nobody)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pymysql
import redis
import requests
from itsdangerous import BadSignature, Signer

from devstack.processes import free_port, start_listening, stop_process

ROOT = Path(__file__).resolve().parents[2]
MEIDUO_PROJECT = ROOT / "tests" / "hostapps" / "meiduo"


@dataclass(frozen=True)
class Kind:
    """What one tutorial app is: its database, its Redis db and its session settings."""

    name: str
    database: str
    redis_db: int
    user_table: str
    session_lifetime: int  # Flask PERMANENT_SESSION_LIFETIME / Django SESSION_COOKIE_AGE
    permanent_session: bool  # Flask SESSION_PERMANENT
    serialization: str  # what the host's session store writes
    use_signer: bool
    session_key_prefix: str  # the Redis key of a session is this + the session id
    session_cookie: str
    csrf_cookie: str


KINDS = {
    "ihome": Kind(
        "ihome", "ihome", 2, "ih_user_profile", 86400, True, "msgpack", True, "session:",
        "session", "csrf_token",
    ),
    "news": Kind(
        "news", "information", 3, "info_user", 86400 * 2, False, "msgpack", True, "session:",
        "session", "csrf_token",
    ),
    "meiduo": Kind(
        "meiduo", "meiduo_mall", 1, "tb_users", 1209600, True, "pickle", False,
        ":1:django.contrib.sessions.cache", "sessionid", "csrftoken",
    ),
}  # fmt: skip

DJANGO_AUTH_BACKEND = "users.utils.UsernameMobileAuthBackend"
# Tables of Django's own that `migrate` fills once and a reset must keep.
DJANGO_BOOKKEEPING = {"django_migrations", "django_content_type", "auth_permission"}
CSRF_FIELD = re.compile(r'name="(?:csrfmiddlewaretoken|csrf_token)" value="([^"]+)"')


class HostClient(requests.Session):
    """A requests.Session whose paths are relative to the host app; no redirects followed.
    Cookies are kept per host name like a browser's, so the same client can also speak to
    our server on 127.0.0.1 and each side sees the other's cookies."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def get(self, url, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        return super().get(url, **kwargs)

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 30)
        if url.startswith("/"):
            url = self.base_url + url
        return super().request(method, url, *args, **kwargs)


class HostApp:
    """One host app process (python -m tests.hostapps.serve KIND) and what tests need of it."""

    def __init__(self, kind: str, redis_server, mariadb_server, log_path: Path, secret_key=None):
        self.kind = KINDS[kind]
        self.redis_server, self.mariadb_server = redis_server, mariadb_server
        self.log_path = log_path
        self.secret_key = secret_key or f"{kind}-host-app-secret-key"
        self.port = free_port()
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        return self.kind.database

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_server.port}/{self.kind.redis_db}"

    def start(self) -> HostApp:
        """A fresh start: its database created if new, its Redis db and its tables empty."""
        self._create_database()
        with self.redis() as client:
            client.flushdb()
        env = {
            **os.environ,
            "HOSTAPP_PORT": str(self.port),
            "HOSTAPP_SECRET_KEY": self.secret_key,
            "HOSTAPP_MYSQL_PORT": str(self.mariadb_server.port),
            "HOSTAPP_MYSQL_USER": self.mariadb_server.user,
            "HOSTAPP_MYSQL_PASSWORD": self.mariadb_server.password,
            "HOSTAPP_MYSQL_DATABASE": self.database,
            "HOSTAPP_REDIS_URL": self.redis_url,
            "HOSTAPP_REDIS_CACHE_URL": f"redis://127.0.0.1:{self.redis_server.port}/0",
        }
        self.process = start_listening(
            [sys.executable, "-m", "tests.hostapps.serve", self.kind.name],
            self.port,
            self.log_path,
            timeout=60,
            cwd=ROOT,
            env=env,
            name=f"host app {self.kind.name}",
        )
        self.empty_tables()
        return self

    def stop(self) -> None:
        stop_process(self.process)

    # -- our server's configuration for this host ------------------------------------------

    def host_app_config(self) -> dict[str, object]:
        """The `host_app:` section of our server's config for this host."""
        return {
            "kind": self.kind.name,
            "redis_url": self.redis_url,
            "secret_key": self.secret_key,
            "serialization": self.kind.serialization,
            "session_lifetime": self.kind.session_lifetime,
            "permanent_session": self.kind.permanent_session,
            "use_signer": self.kind.use_signer,
            "session_key_prefix": self.kind.session_key_prefix,
            "django_auth_backend": DJANGO_AUTH_BACKEND,
            "django_hash_algorithm": "sha256",
        }

    def server_config(self) -> dict[str, dict[str, object]]:
        """The sections to change in our server's Config (make_app(**host.server_config()))."""
        return {"host_app": self.host_app_config(), "mysql": {"database": self.database}}

    def server_env(self) -> dict[str, str]:
        """The same as SMSREG_* environment variables, for a LiveServer."""
        env = {"SMSREG_MYSQL_DATABASE": self.database}
        for key, value in self.host_app_config().items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"SMSREG_HOST_APP_{key.upper()}"] = text
        return env

    # -- the host's own ways -----------------------------------------------------------------

    def client(self) -> HostClient:
        return HostClient(self.base_url)

    def create_user(self, mobile: str, password: str, name: str | None = None) -> int:
        """A user made by the host's own ORM and password hasher; returns its id.
        `name`: ihome's name, news's nick_name, meiduo's username (default: the mobile,
        which meiduo's username rule accepts)."""
        with self.client() as client:
            if self.kind.name == "meiduo":
                form = {"username": name or mobile, "password": password, "mobile": mobile}
                answer = client.post("/host/users/", data=form).json()
                return answer["id"]
            body = {"mobile": mobile, "password": password, "name": name}
            return client.post("/host/users", json=body).json()["data"]["user_id"]

    def check_password(self, account: str, password: str) -> dict[str, object]:
        """Whether the host accepts the password of the user (ihome/news: by mobile; meiduo:
        username or mobile): {"ok": bool, "hash": the stored hash[, "must_update": bool]}.
        Leaves the stored hash as it is."""
        with self.client() as client:
            if self.kind.name == "meiduo":
                query = {"username": account, "password": password}
                answer = client.get("/host/check_password/", params=query).json()
                return {key: answer[key] for key in ("ok", "hash", "must_update")}
            query = {"mobile": account, "password": password}
            return client.get("/host/check_password", params=query).json()["data"]

    def csrf_token(self, client: requests.Session) -> str:
        """The host's CSRF token as its own page gives it (the hidden field of /host/form)."""
        response = client.get(self._path("form"))
        response.raise_for_status()
        return CSRF_FIELD.search(response.text).group(1)

    def login(self, client: requests.Session, account: str, password: str, remembered=True):
        """The host's own login, as its front-end does it; returns the response."""
        if self.kind.name == "meiduo":
            page = client.get(self._path("login"))
            token = CSRF_FIELD.search(page.text).group(1)
            form = {"csrfmiddlewaretoken": token, "username": account, "password": password}
            if remembered:
                form["remembered"] = "on"
            return client.post(self._path("login"), data=form)
        headers = {"X-CSRFToken": self.csrf_token(client)}
        return client.post(
            self._path("login"), json={"mobile": account, "password": password}, headers=headers
        )

    def logout(self, client: requests.Session):
        """The host's own logout (GET /host/logout, /host/logout/); returns the response."""
        return client.get(self._path("logout"))

    def whoami(self, client: requests.Session) -> dict[str, object] | None:
        """Who the host says is logged in: ihome/news the `data` of /host/whoami (session keys
        and the user row), meiduo the JSON of /host/info/; None when nobody is."""
        response = client.get(self._path("whoami"))
        if self.kind.name == "meiduo":
            if response.status_code == 302:  # LoginRequiredMixin: to LOGIN_URL?next=
                return None
            response.raise_for_status()
            return response.json()
        answer = response.json()
        if answer["errno"] == "4101":
            return None
        assert answer["errno"] == "0", answer
        return answer["data"]

    def _path(self, name: str) -> str:
        if self.kind.name == "meiduo":
            return {"whoami": "/host/info/"}.get(name, f"/host/{name}/")
        return f"/host/{name}"

    # -- what the host stores ----------------------------------------------------------------

    def redis(self) -> redis.Redis:
        """A client of the host's session Redis db (bytes, as the host reads it)."""
        return redis.Redis.from_url(self.redis_url)

    def session_id(self, cookie_value: str) -> str:
        """The session id inside the session cookie's value (Flask: checks the signature)."""
        if not self.kind.use_signer:
            return cookie_value
        signer = Signer(self.secret_key, salt="flask-session", key_derivation="hmac")
        return signer.unsign(cookie_value).decode()

    def session_store_key(self, cookie_value: str) -> str:
        return self.kind.session_key_prefix + self.session_id(cookie_value)

    def stored_session(self, cookie_value: str) -> dict[str, object] | None:
        """The session dict the host keeps for this cookie, decoded as the host decodes it;
        None if there is none (or the cookie's signature is wrong)."""
        try:
            key = self.session_store_key(cookie_value)
        except BadSignature:
            return None
        with self.redis() as client:
            raw = client.get(key)
        if raw is None:
            return None
        if self.kind.serialization == "pickle":
            return pickle.loads(raw)
        return msgspec.msgpack.decode(raw)

    def connect(self) -> pymysql.Connection:
        """A root connection to the host's database (autocommit)."""
        return pymysql.connect(
            unix_socket=str(self.mariadb_server.socket_path),
            user="root",
            database=self.database,
            autocommit=True,
        )

    def empty_tables(self) -> None:
        """Every table of the host's database emptied (ours beside the host's too), but the
        rows `migrate` wrote for Django itself."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = [row[0] for row in cur.fetchall() if row[0] not in DJANGO_BOOKKEEPING]
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cur.execute(f"TRUNCATE TABLE `{table}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")

    def _create_database(self) -> None:
        """The host's database, and the grant our server's user needs to share it."""
        admin = pymysql.connect(
            unix_socket=str(self.mariadb_server.socket_path), user="root", autocommit=True
        )
        with contextlib.closing(admin), admin.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            cur.execute(
                f"GRANT ALL ON `{self.database}`.* TO %s@'127.0.0.1'", (self.mariadb_server.user,)
            )
