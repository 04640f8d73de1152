"""Our application served on its own event loop in a thread, for tests that are plain
functions: they speak HTTP to it with `requests`, like a browser that also visits a host app
(tests/hostapps/), and its log lines reach caplog. The same services and HTTP server as
server.py (open_services, build_application, make_http_server), without a process start."""

from __future__ import annotations

import asyncio
import threading

import tornado.testing

from handlers.routes import build_application
from server import make_http_server, open_services
from services.config import Config

START_PATIENCE = 30.0  # seconds: opening the services applies the schema, on a busy machine


class ThreadedServer:
    """with ThreadedServer(config) as server: requests.get(server.base_url + "/...")"""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="smsreg-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(START_PATIENCE):
            raise RuntimeError(f"the server did not start within {START_PATIENCE} s")
        if self._failure is not None:
            raise RuntimeError("the server did not start") from self._failure
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_PATIENCE)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__ if it happened before the start
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with open_services(self.config) as services:
            app = build_application(services)
            sock, self.port = tornado.testing.bind_unused_port()
            server = make_http_server(app, self.config)
            server.add_sockets([sock])
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                server.stop()
                await server.close_all_connections()
