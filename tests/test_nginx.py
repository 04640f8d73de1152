"""Two server.py instances sharing Redis, MariaDB and the sandbox; alone and behind nginx.

nginx runs with docs/deploy/nginx.conf itself, rendered with this test's ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

from devstack.processes import free_port, start_listening
from services import keys
from tests.conftest import ROOT, Client, LiveServer
from tests.flows import PASSWORD, assert_refusal, post, register, send
from tests.polling import async_wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE_CONF = ROOT / "docs" / "deploy" / "nginx.conf"
PLACEHOLDER = re.compile(r"__[A-Z_]+__")
IP_LIMIT = 3  # SMS per client IP per hour on both instances, to reach the limit quickly


class Nginx:
    """nginx in the foreground with docs/deploy/nginx.conf, everything under `directory`."""

    def __init__(self, directory: Path, upstreams: list[str]) -> None:
        self.directory = Path(directory)
        self.port = free_port()
        self.upstreams = upstreams
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.directory / "smsreg.access.log"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    def render(self) -> Path:
        """Write the site file with this test's values and a minimal main config around it."""
        site = SITE_CONF.read_text(encoding="utf-8")
        values = {
            "__LISTEN__": f"127.0.0.1:{self.port}",
            "__UPSTREAM_A__": self.upstreams[0],
            "__UPSTREAM_B__": self.upstreams[1],
            "__LOG_DIR__": str(self.directory),
        }
        assert set(PLACEHOLDER.findall(site)) == set(values)
        for placeholder, value in values.items():
            site = site.replace(placeholder, value)
        (self.directory / "smsreg.conf").write_text(site, encoding="utf-8")
        temp = self.directory / "temp"
        temp.mkdir()
        # Debian's /etc/nginx/nginx.conf reduced to what the site needs, with every path
        # that nginx writes inside the temp directory. As root, the workers stay root: the
        # pytest temp directory is not open to Debian's www-data.
        main = "\n".join(
            [
                "user root;" if os.geteuid() == 0 else "",
                "worker_processes 1;",
                "events { worker_connections 256; }",
                "http {",
                "    access_log off;",
                *(
                    f"    {kind}_temp_path {temp / kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                ),
                f"    include {self.directory / 'smsreg.conf'};",
                "}",
                "",
            ]
        )
        conf = self.directory / "nginx.conf"
        conf.write_text(main, encoding="utf-8")
        return conf

    def start(self) -> Nginx:
        if not Path(NGINX).exists():
            pytest.fail("nginx not found: install the Debian package nginx")
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.render()
        directives = f"daemon off; pid {self.directory / 'nginx.pid'}; error_log {self.error_log};"
        args = [
            NGINX,
            "-p", str(self.directory),
            "-c", str(conf),
            "-e", str(self.error_log),
            "-g", directives,
        ]  # fmt: skip
        try:
            self.process = start_listening(
                args, self.port, self.directory / "nginx.out", timeout=10, name="nginx"
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.error_log.read_text()}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_lines(self) -> list[str]:
        return self.access_log.read_text(encoding="utf-8").splitlines()

    async def settled_log(self, done: Callable[[list[str]], bool], what: str) -> list[str]:
        """The access log once done(lines) holds: nginx writes a request's line after the
        client has its answer, so the last lines may still be on their way."""

        async def lines() -> list[str]:
            return self.log_lines()

        return await async_wait_until(lines, done, what=what)


class SourceClient(Client):
    """A Client whose requests leave from a given loopback address (127.0.0.0/8 is all ours)."""

    def __init__(self, base_url: str, app, source_ip: str | None) -> None:
        super().__init__(base_url, app)
        self.source_ip = source_ip

    async def fetch(self, path: str, method: str = "GET", body=None, headers=None, **kwargs):
        if self.source_ip:
            kwargs.setdefault("network_interface", self.source_ip)
        return await super().fetch(path, method, body, headers, **kwargs)


@contextlib.asynccontextmanager
async def browser(config, base_url: str, source_ip: str | None = None):
    """A Client of live servers; it reads CAPTCHA texts from the shared Redis, as tests do."""
    redis = aioredis.Redis.from_url(config.redis.url, decode_responses=True)
    try:
        yield SourceClient(
            base_url, SimpleNamespace(services=SimpleNamespace(redis=redis)), source_ip
        )
    finally:
        await redis.aclose()


@contextlib.contextmanager
def live_servers(config, directory: Path, names: str):
    """server.py processes, one per name, on the session's Redis, MariaDB and sandbox."""
    env = {
        "SMSREG_SECURITY_TRUSTED_PROXIES": "127.0.0.1/32",  # nginx connects from 127.0.0.1
        "SMSREG_LIMITS_SMS_PER_IP_HOUR": str(IP_LIMIT),
    }
    servers = [LiveServer(config, directory / f"server-{name}.log", env) for name in names]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def address(server) -> str:
    return server.base_url.removeprefix("http://")


@pytest.fixture
def instances(config, clean_state, tmp_path):
    """Two instances, A and B."""
    with live_servers(config, tmp_path, "ab") as servers:
        yield servers


@pytest.fixture
def nginx(instances, tmp_path):
    proxy = Nginx(tmp_path / "nginx", [address(server) for server in instances])
    proxy.start()
    yield proxy
    proxy.stop()


class BlackHole:
    """An upstream that reads each request, then closes the connection without answering:
    an instance that dies while handling the request."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.address = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> BlackHole:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        return self

    def methods(self) -> list[str]:
        return [line.split()[0] for line in self.request_lines]

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.request_lines.append(head.split(b"\r\n", 1)[0].decode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def logout(client) -> dict:
    return await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers())


# --- two instances, one state ------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_journey_split_across_two_instances(instances, config, sandbox, fresh_mobile):
    """One browser whose requests land on A and B in turn: all state is in Redis and MySQL."""
    a, b = instances
    async with browser(config, a.base_url) as client:
        mobile = fresh_mobile()
        text = await client.new_captcha("split-1")  # A renders and stores the CAPTCHA
        client.base_url = b.base_url
        assert (await client.send_sms(mobile, text, "split-1"))["errno"] == "0"  # B checks it
        [message] = sandbox.inbox(mobile)
        client.base_url = a.base_url  # A verifies the code B stored and logs the user in
        assert await register(client, mobile, message["datas"][0]) == {
            "errno": "0",
            "errmsg": "注册成功",
        }
        client.base_url = b.base_url  # B knows the session A created
        assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}
        assert (await logout(client))["errno"] == "0"
        client.base_url = a.base_url  # B's logout ended it for A too
        assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
        login = {"mobile": mobile, "password": PASSWORD}
        assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
        client.base_url = b.base_url
        assert (await client.json("/api/v1.0/user"))["data"]["mobile"] == mobile


# --- behind nginx ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_journey_through_nginx(nginx, instances, config, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    async with browser(config, nginx.base_url) as client:
        text = await client.new_captcha("ngx-1")
        assert (await client.send_sms(mobile, text, "ngx-1"))["errno"] == "0"
        code = sandbox.inbox(mobile)[-1]["datas"][0]
        assert (await register(client, mobile, code))["errno"] == "0"
        assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}
        assert (await logout(client))["errno"] == "0"
        assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
        login = {"mobile": mobile, "password": PASSWORD}
        assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
        assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}

        # A body over client_max_body_size gets nginx's 413 in the API's JSON shape.
        response = await client.fetch(
            "/api/v1.0/users",
            "POST",
            json.dumps({"password": "x" * 20_000}),
            {**await client.xsrf_headers(), "Content-Type": "application/json"},
        )
        assert response.code == 413
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert json.loads(response.body) == {"errno": "4103", "errmsg": "请求体过大"}

    def journey_logged(lines: list[str]) -> bool:
        # Round robin: the journey was served by both instances, one request each in turn.
        served_by = [any(f"upstream={address(s)} " in line for line in lines) for s in instances]
        return all(served_by) and any('" 413 ' in line for line in lines)  # the last request

    lines = await nginx.settled_log(journey_logged, "the journey in nginx's access log")
    # The access log masks mobiles and leaves out query strings (the CAPTCHA answer).
    assert not any(mobile in line or text in line for line in lines)
    assert any("/api/v1.0/sms_codes/<mobile> " in line for line in lines)


@pytest.mark.gen_test(timeout=60)
async def test_ip_limit_behind_nginx_uses_the_peer_nginx_saw(
    nginx, instances, config, sandbox, fresh_mobile
):
    """A forged X-Forwarded-For cannot pick the IP that the per-IP limit counts.

    The instances trust 127.0.0.1/32, the address nginx connects from. nginx sets
    X-Forwarded-For to "<what the client sent>, <the peer nginx saw>" and X-Real-IP to that
    peer. resolve_client_ip walks X-Forwarded-For from the right and returns the first hop
    that is not a trusted proxy. So the client must not itself come from 127.0.0.1: it would
    look like a trusted proxy and its forged hop would be believed. Here Mallory connects to
    nginx from 127.0.0.2 (untrusted, as any real client would be), so the rightmost hop is
    127.0.0.2 whatever she writes to its left:
      "1.2.3.4"              -> "1.2.3.4, 127.0.0.2"              -> 127.0.0.2
      "1.2.3.5, 127.0.0.1"   -> "1.2.3.5, 127.0.0.1, 127.0.0.2"   -> 127.0.0.2 (a trusted-
                                 looking hop left of her address does not help)
      X-Real-IP: 9.9.9.9     -> replaced by nginx with 127.0.0.2  -> 127.0.0.2
    All her requests count on sms:ip:{127.0.0.2}; at IP_LIMIT she is refused, and going
    around nginx straight to instance B does not help either: B sees an untrusted peer,
    ignores her headers, and the count lives in the shared Redis.
    In contrast a client on 127.0.0.1 IS trusted, so its forged "1.2.3.4" is believed: only
    addresses listed in security.trusted_proxies (the proxy hosts) may name the client.
    """
    _, b = instances
    forged = [
        {"X-Forwarded-For": "1.2.3.4"},
        {"X-Forwarded-For": "1.2.3.5, 127.0.0.1"},
        {"X-Real-IP": "9.9.9.9"},
    ]
    assert len(forged) == IP_LIMIT
    async with browser(config, nginx.base_url, source_ip="127.0.0.2") as mallory:
        for i, headers in enumerate(forged):
            assert (await send(mallory, fresh_mobile(), f"m-{i}", headers))[1]["errno"] == "0"
        response, body = await send(mallory, fresh_mobile(), "m-3", {"X-Forwarded-For": "5.6.7.8"})
        assert_refusal(response, body, "ip_hourly", 3500, 3600)
        mallory.base_url = b.base_url
        response, body = await send(mallory, fresh_mobile(), "m-4", {"X-Forwarded-For": "5.6.7.9"})
        assert_refusal(response, body, "ip_hourly", 3500, 3600)

        redis = mallory.app.services.redis
        assert [key async for key in redis.scan_iter("sms:ip:*")] == [
            keys.sms_ip_hourly_key("127.0.0.2")
        ]
        assert await redis.get(keys.sms_ip_hourly_key("127.0.0.2")) == str(IP_LIMIT)
        assert len(sandbox.inbox()) == IP_LIMIT

    async with browser(config, nginx.base_url) as local:  # from 127.0.0.1, a trusted address
        forged_by_local = {"X-Forwarded-For": "1.2.3.4"}
        assert (await send(local, fresh_mobile(), "l-0", forged_by_local))[1]["errno"] == "0"
        redis = local.app.services.redis
        assert await redis.get(keys.sms_ip_hourly_key("1.2.3.4")) == "1"
        assert not await redis.exists(keys.sms_ip_hourly_key("127.0.0.1"))
    # nginx logged Mallory's real address, not what she wrote.
    await nginx.settled_log(
        lambda lines: sum(line.startswith("127.0.0.2 ") for line in lines) >= 2 * IP_LIMIT,
        "Mallory's requests logged with her real address",
    )


@pytest.mark.gen_test(timeout=60)
async def test_nginx_moves_requests_off_a_stopped_instance(nginx, instances, config):
    """A request that never reached an instance (connection refused) goes to the other one.

    That holds for POST too: nginx refuses to retry a POST only once it has been sent.
    """
    a, b = instances
    assert b.stop() == 0
    address_a, address_b = address(a), address(b)
    async with browser(config, nginx.base_url) as client:
        for i in range(3):
            answer = await post(client, "/api/v1.0/sessions", {"mobile": "1", "password": "x"})
            assert answer == {"errno": "4103", "errmsg": "手机号格式错误"}, i
            response = await client.fetch(f"/api/v1.0/image_codes/failover-{i}")
            assert response.code == 200
    lines = await nginx.settled_log(lambda lines: len(lines) >= 6, "all 6 requests logged")
    assert all('" 200 ' in line for line in lines), lines  # no 502 reached the client
    retried = [line for line in lines if f"upstream={address_b}, {address_a} " in line]
    assert retried, lines
    assert any('"POST ' in line for line in retried), lines


@pytest.mark.gen_test(timeout=60)
async def test_nginx_retries_a_get_but_never_resends_a_post_an_instance_received(
    config, clean_state, sandbox, tmp_path
):
    """An instance that fails after reading the request: the GET goes on to the other
    instance, the POST is answered 502 and never reaches a second instance."""
    hole = await BlackHole().start()
    try:
        with live_servers(config, tmp_path, "a") as (a,):
            proxy = Nginx(tmp_path / "nginx", [address(a), hole.address]).start()
            try:
                async with browser(config, proxy.base_url) as client:
                    # Round robin sends every other request to the black hole: GETs until it
                    # has swallowed one, then POSTs until it has swallowed one.
                    headers = await client.xsrf_headers()
                    for i in range(4):
                        if "GET" in hole.methods():
                            break
                        response = await client.fetch(f"/api/v1.0/image_codes/hole-{i}")
                        assert response.code == 200  # retried on A when the hole had it
                    codes = []
                    for _ in range(4):
                        if "POST" in hole.methods():
                            break
                        login = {"mobile": "1", "password": "x"}
                        response = await client.fetch("/api/v1.0/sessions", "POST", login, headers)
                        codes.append(response.code)
                lines = await proxy.settled_log(
                    lambda lines: any(f"upstream={hole.address} " in line for line in lines),
                    "the POST the hole swallowed, logged",
                )
            finally:
                proxy.stop()
    finally:
        await hole.stop()
    assert sorted(hole.methods()) == ["GET", "POST"]
    assert codes[-1] == 502 and set(codes[:-1]) <= {200}
    [get_line] = [line for line in lines if f"upstream={hole.address}, {address(a)} " in line]
    assert get_line.startswith("127.0.0.1 ") and '"GET ' in get_line and '" 200 ' in get_line
    [post_line] = [line for line in lines if f"upstream={hole.address} " in line]
    assert '"POST /api/v1.0/sessions ' in post_line and "ustatus=502 " in post_line
