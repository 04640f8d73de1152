"""nginx with docs/deploy/nginx.conf, server.py instances, and clients that speak through them."""

from __future__ import annotations

import asyncio
import contextlib
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
from tests.conftest import ROOT, Client, LiveServer
from tests.polling import async_wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE_CONF = ROOT / "docs" / "deploy" / "nginx.conf"
HOST_APP_SITES = ROOT / "docs" / "deploy" / "host-apps"  # ihome.conf, meiduo.conf, news.conf
PLACEHOLDER = re.compile(r"__[A-Z_]+__")
IP_LIMIT = 3  # SMS per client IP per hour on both instances, to reach the limit quickly


class Nginx:
    """nginx in the foreground with docs/deploy/nginx.conf, everything under `directory`."""

    site = SITE_CONF  # the site file rendered, with site_values() for its placeholders

    def __init__(
        self, directory: Path, upstreams: list[str], other_app: str = "127.0.0.1:9"
    ) -> None:
        self.directory = Path(directory)
        self.port = free_port()
        self.upstreams = upstreams
        self.other_app = other_app  # the app behind forward auth (/app/); discard port: none
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

    def site_values(self) -> dict[str, str]:
        """What each placeholder of the site file becomes in this test."""
        return {
            "__LISTEN__": f"127.0.0.1:{self.port}",
            "__UPSTREAM_A__": self.upstreams[0],
            "__UPSTREAM_B__": self.upstreams[1],
            "__LOG_DIR__": str(self.directory),
            "__OTHER_APP__": self.other_app,
        }

    def render(self) -> Path:
        """Write the site file with this test's values and a minimal main config around it."""
        site = self.site.read_text(encoding="utf-8")
        values = self.site_values()
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


class HostAppNginx(Nginx):
    """nginx with docs/deploy/host-apps/<kind>.conf: one smsreg instance and the host app."""

    def __init__(self, directory: Path, kind: str, smsreg: str, host_app: str) -> None:
        super().__init__(directory, [smsreg])
        self.site = HOST_APP_SITES / f"{kind}.conf"
        self.host_app = host_app

    def site_values(self) -> dict[str, str]:
        return {
            "__LISTEN__": f"127.0.0.1:{self.port}",
            "__SMSREG__": self.upstreams[0],
            "__HOST_APP__": self.host_app,
            "__LOG_DIR__": str(self.directory),
        }


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
