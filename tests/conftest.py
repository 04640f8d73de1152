"""Fixtures: real redis-server, mariadbd and Ronglian sandbox processes on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.testing

from devstack.processes import (
    MariaDBServer,
    RedisServer,
    free_port,
    start_listening,
    stop_process,
)
from devstack.run import SANDBOX_TEMPLATES
from handlers.application import SmsRegApplication
from handlers.routes import build_application
from server import make_http_server, open_services
from services.config import Config, load_config
from services.store import keys
from tests.cluster_helpers import LocalRedisCluster
from tests.hostapps.harness import HostApp
from tests.sandbox_helpers import AliyunSandboxProcess, SandboxProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def thread_event_loop():
    """The main thread's asyncio loop while no test runs one, closed at the end.

    pytest-tornado's io_loop builds an IOLoop, whose make_current() asks asyncio for the
    thread's loop and so makes asyncio create one when none is set; Tornado leaves it set and
    nobody closes it. A test that then calls asyncio.run() (a live server's client) sets the
    thread's loop to None at its end, the dropped loop is collected, and its unclosed self-pipe
    fails whichever test is running then with a ResourceWarning. Setting this one loop first
    (and again after each test, below) means no such loop is ever created."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(autouse=True)
def _thread_event_loop_restored(thread_event_loop):
    yield
    asyncio.set_event_loop(thread_event_loop)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory):
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real 3-master Redis Cluster, started once for every test that asks for it."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def redis_mode(request) -> dict[str, object]:
    """The config change for each Redis mode: a test that uses it runs on both, and every
    multi-key step must then keep its keys in one hash slot (docs/REDIS_KEYS.md)."""
    if request.param == "standalone":
        return {}
    cluster = request.getfixturevalue("redis_cluster")
    cluster.flushall()
    return {"redis": {"mode": "cluster", "cluster_nodes": cluster.startup_nodes}}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    templates = json.loads(SANDBOX_TEMPLATES.read_text(encoding="utf-8"))
    process = SandboxProcess(tmpdir=str(tmp_path_factory.mktemp("sandbox")), config=templates)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def aliyun_sandbox(tmp_path_factory):
    process = AliyunSandboxProcess(tmpdir=str(tmp_path_factory.mktemp("aliyun")))
    process.start()
    yield process
    process.stop()


def session_config(redis_server, mariadb_server, sandbox, aliyun=None) -> Config:
    """The shipped config.yml pointed at this session's processes, with short timeouts."""
    base = load_config(ROOT / "config.yml", environ={})
    return base.replace(
        # Threads and no ready pool: a render process pool per test app would cost seconds;
        # tests/test_captcha_pool.py covers the shipped process pool and ready pool.
        captcha={"render_processes": 0, "pool_size": 0},
        # A fixed bound on sends in flight: a busy test machine's loop lag would otherwise
        # shed the bursts of tests about other things. tests/test_admission.py and
        # tests/services/codes/test_admission.py test the lag rule itself.
        admission={"max_loop_lag": 0},
        redis={"url": redis_server.url},
        mysql={"port": mariadb_server.port, "query_timeout": 2.0},
        ronglian={"base_url": sandbox.base_url, "request_timeout": 1.5, "connect_timeout": 1.0},
        # Ronglian alone unless a test asks for failover (tests/test_failover.py).
        providers=("ronglian",),
        aliyun={
            "base_url": aliyun.base_url if aliyun else "http://127.0.0.1:9",
            "request_timeout": 1.5,
            "connect_timeout": 1.0,
        },
        # The other suites send many unverified codes from one address, which is exactly what
        # the fraud breaker stops: it runs (admit, release, convert) but never trips there.
        # Budget shedding is off for the same reason. tests/test_fraud.py sets its own values.
        fraud={"min_sends": 100_000, "budget_share_newcomer": 1.0, "budget_share_poor": 1.0},
    )


@pytest.fixture
def config(redis_server, mariadb_server, sandbox, aliyun_sandbox) -> Config:
    return session_config(redis_server, mariadb_server, sandbox, aliyun_sandbox)


def reset_state(redis_server, mariadb_server, sandbox, *more_sandboxes) -> None:
    """Empty Redis, empty user, consent and deletion tables, an empty inbox and no faults."""
    import redis as sync_redis

    with sync_redis.Redis(port=redis_server.port) as client:
        client.flushdb()
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        for table in ("ih_user_profile", "ih_user_consent", "ih_account_deletion"):
            cur.execute(f"SHOW TABLES LIKE '{table}'")
            if cur.fetchone():
                cur.execute(f"TRUNCATE TABLE {table}")
    for each in (sandbox, *more_sandboxes):
        each.clear()
        each.reset_faults()
        each.set_callback("")


@pytest.fixture
def clean_state(redis_server, mariadb_server, sandbox, aliyun_sandbox):
    """Every test starts with empty Redis, an empty user table and empty inboxes."""
    reset_state(redis_server, mariadb_server, sandbox, aliyun_sandbox)


@pytest.fixture
def make_app(io_loop, config, clean_state):
    """Build the real application and services on this test's loop, with config changes."""
    stack = contextlib.AsyncExitStack()

    async def build(**changes) -> SmsRegApplication:
        services = await stack.enter_async_context(open_services(config.replace(**changes)))
        return build_application(services)

    yield build
    io_loop.run_sync(stack.aclose)


@pytest.fixture
def make_mode_app(make_app, redis_mode):
    """make_app on each Redis mode (redis_mode): the same test, standalone and on a cluster."""

    async def build(**changes) -> SmsRegApplication:
        return await make_app(**redis_mode, **changes)

    return build


@pytest.fixture
def mode_client(io_loop, make_mode_app):
    """A client of the application served on each Redis mode (see redis_mode)."""
    stack = contextlib.AsyncExitStack()

    async def open_client() -> Client:
        return await stack.enter_async_context(serving(await make_mode_app()))

    yield io_loop.run_sync(open_client)
    io_loop.run_sync(stack.aclose)


@pytest.fixture
def app(io_loop, make_app):
    """pytest-tornado's app fixture: the application with the session's processes."""
    return io_loop.run_sync(make_app)


@contextlib.asynccontextmanager
async def serving(app: SmsRegApplication, bound: tuple[socket.socket, int] | None = None):
    """Serve a second application on a free port, for tests that need their own config.

    `bound`: a socket and its port from tornado.testing.bind_unused_port(), for an app that
    had to know its own address before it was built (a voice call's respUrl).
    """
    sock, port = bound or tornado.testing.bind_unused_port()
    server = make_http_server(app, app.services.config)
    server.add_sockets([sock])
    try:
        yield Client(f"http://127.0.0.1:{port}", app)
    finally:
        server.stop()
        await server.close_all_connections()


_mobiles = itertools.count(13_900_000_000)


@pytest.fixture
def fresh_mobile():
    """A mobile number no other test in this session uses (the sandbox remembers sends)."""
    return lambda: str(next(_mobiles))


class Client:
    """Speaks the ihome API to the server under test, the way its jQuery front-end does."""

    def __init__(self, base_url: str, app: SmsRegApplication) -> None:
        self.base_url = base_url
        self.app = app
        self.http = tornado.httpclient.AsyncHTTPClient()
        self.cookies: dict[str, str] = {}

    async def fetch(self, path: str, method: str = "GET", body=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if isinstance(body, dict | list):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        response = await self.http.fetch(
            self.base_url + path,
            method=method,
            body=body,
            headers=headers,
            raise_error=False,
            follow_redirects=False,
            **kwargs,
        )
        for cookie in response.headers.get_list("Set-Cookie"):
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    async def json(self, path: str, method: str = "GET", body=None, headers=None) -> dict:
        response = await self.fetch(path, method, body, headers)
        assert response.headers["Content-Type"].startswith("application/json"), response.body
        return json.loads(response.body)

    async def new_captcha(self, captcha_id: str) -> str:
        """Fetch a CAPTCHA image and return its text, read from Redis by its documented key."""
        response = await self.fetch(f"/api/v1.0/image_codes/{captcha_id}")
        assert response.code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        return await self.app.services.redis.get(keys.captcha_key(captcha_id))

    async def send_sms(self, mobile: str, image_code: str, image_code_id: str) -> dict:
        query = urllib.parse.urlencode({"image_code": image_code, "image_code_id": image_code_id})
        return await self.json(f"/api/v1.0/sms_codes/{mobile}?{query}")

    async def xsrf_headers(self) -> dict[str, str]:
        if "csrf_token" not in self.cookies:
            await self.fetch("/api/v1.0/image_codes/xsrf-bootstrap")
        return {"X-CSRFToken": self.cookies["csrf_token"]}


@pytest.fixture
def client(http_server, http_port, app) -> Client:
    """A client of the app served by pytest-tornado's http_server."""
    return Client(f"http://127.0.0.1:{http_port}", app)


class LiveServer:
    """`python server.py` as its own process, configured through SMSREG_* environment variables."""

    def __init__(self, config: Config, log_path: Path, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "SMSREG_REDIS_URL": config.redis.url,
            "SMSREG_MYSQL_PORT": str(config.mysql.port),
            "SMSREG_RONGLIAN_BASE_URL": config.ronglian.base_url,
            "SMSREG_PROVIDERS": ",".join(config.providers),
            "SMSREG_ALIYUN_BASE_URL": config.aliyun.base_url,
            "SMSREG_ADMISSION_MAX_LOOP_LAG": str(config.admission.max_loop_lag),
            # As in-process apps (session_config): the breaker runs but never trips, unless
            # a test sets its own fraud.* (extra_env).
            "SMSREG_FRAUD_MIN_SENDS": str(config.fraud.min_sends),
            "SMSREG_FRAUD_BUDGET_SHARE_NEWCOMER": str(config.fraud.budget_share_newcomer),
            "SMSREG_FRAUD_BUDGET_SHARE_POOR": str(config.fraud.budget_share_poor),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.args = ["--processes", "1"]
        self.wait_address = "127.0.0.1"  # where start() waits for the port to answer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.process = start_listening(
            [sys.executable, "server.py", "--port", str(self.port), *self.args],
            self.port,
            self.log_path,
            timeout=20,
            cwd=ROOT,
            env=self.env,
            name="server",
            host=self.wait_address,
        )
        return self

    def stop(self) -> int | None:
        if self.process is None:
            return None
        stop_process(self.process, timeout=20)
        return self.process.returncode


@pytest.fixture
def live_server(config, clean_state, tmp_path):
    """The real server process on a free port, using this session's Redis, MariaDB and sandbox."""
    server = LiveServer(config, tmp_path / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def start_host_app(redis_server, mariadb_server, tmp_path):
    """Starts a tutorial host app as a subprocess: start_host_app(kind, secret_key=None) with
    kind "ihome", "news" or "meiduo" (tests/hostapps/README.md). Each starts afresh (its Redis
    db and its database's tables empty) and is stopped after the test."""
    apps: list[HostApp] = []

    def start(kind: str, secret_key: str | None = None) -> HostApp:
        log_path = tmp_path / f"host-{kind}-{len(apps)}.log"
        apps.append(HostApp(kind, redis_server, mariadb_server, log_path, secret_key))
        return apps[-1].start()

    yield start
    for app in apps:
        app.stop()


@pytest.fixture
def ihome_host(start_host_app) -> HostApp:
    return start_host_app("ihome")


@pytest.fixture
def news_host(start_host_app) -> HostApp:
    return start_host_app("news")


@pytest.fixture
def meiduo_host(start_host_app) -> HostApp:
    return start_host_app("meiduo")
