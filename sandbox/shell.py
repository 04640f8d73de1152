"""The HTTP shell both provider sandboxes share: faults, inbox, health, access log, serving.

A sandbox (ronglian.py, aliyun.py) brings its protocol: an ApiHandler subclass that answers
in the provider's format, a Faults subclass with the provider's default status code, and a
SandboxState subclass with its limits. Control API, the same for both:
  GET    /inbox[?mobile=...]   accepted messages, oldest first
  DELETE /inbox                clears the inbox and the sandbox's counters
  GET/PUT/DELETE /faults       fault injection for the next API requests and receipts
  GET/PUT        /callback     where receipts are pushed: {"url": ...}
  GET    /healthz
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol, Self, TypeVar

import tornado.httpserver
import tornado.web

from sandbox.receipts import RECEIPT_MODES, CallbackHandler, ReceiptPusher

FAULT_MODES = ("ok", "hang", "hold", "http500", "garbage", "status", "close")
JSON_CT = "application/json;charset=utf-8"


@dataclass
class Faults:
    """Fault injection: `mode`/`times` for API calls, `receipt`/`receipt_times` for receipts.

    `times` and `receipt_times` count down the faulted requests (receipts) left; None: all.
    """

    latency_ms: int = 0
    mode: str = "ok"
    status_code: str = ""  # what mode "status" answers: each provider sets its default
    times: int | None = None
    receipt: str = "delivered"  # status reports pushed after an accepted message (receipts.py)
    receipt_times: int | None = None
    late_ms: int = 3000

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Validate a PUT /faults body (missing keys take their defaults)."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) - names:
            raise ValueError(f"expected an object with keys among {sorted(names)}")
        faults = cls(**data)
        for name in ("latency_ms", "late_ms"):
            value = getattr(faults, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if faults.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        if faults.receipt not in RECEIPT_MODES:
            raise ValueError(f"receipt must be one of {RECEIPT_MODES}")
        faults.check_status_code()
        for name in ("times", "receipt_times"):
            value = getattr(faults, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null")
        return faults

    def check_status_code(self) -> None:
        """Raise ValueError unless status_code is a code of this provider."""
        if not isinstance(self.status_code, str) or not self.status_code:
            raise ValueError("status_code must be a non-empty string")

    def take(self) -> str:
        """Return the mode for one API request and consume one of `times`."""
        return self._count_down("mode", "times", "ok")

    def take_receipt(self) -> str:
        """Return the receipt mode for one accepted message and consume one of receipt_times."""
        return self._count_down("receipt", "receipt_times", "delivered")

    def _count_down(self, mode_name: str, times_name: str, default: str) -> str:
        """The current mode; a fault with a count left falls back to `default` at zero."""
        mode, times = getattr(self, mode_name), getattr(self, times_name)
        if mode != default and times is not None:
            times -= 1
            if times <= 0:
                setattr(self, mode_name, default)
                times = None
            setattr(self, times_name, times)
        return mode


class _Limiter(Protocol):
    def clear(self) -> None: ...


class _StateSettings(Protocol):
    inbox_limit: int
    report_url: str
    report_delay_ms: list[int]


class SandboxState:
    """Mutable simulator state shared by all handlers: faults, inbox, limits, receipt pusher."""

    faults_type: ClassVar[type[Faults]] = Faults

    def __init__(self, settings: _StateSettings, limiter: _Limiter) -> None:
        self.faults = self.faults_type()
        # "hold": API requests wait here until the faults are next set or reset; `held`
        # counts them, so a test can see that N sends are in flight before going on.
        self.release_held = asyncio.Event()
        self.held = 0
        self.limiter = limiter
        # Bounded so a long benchmark cannot exhaust memory; old messages fall off the front.
        self.inbox: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=settings.inbox_limit
        )
        self.pusher = ReceiptPusher(settings.report_delay_ms)
        self.pusher.url = settings.report_url

    def clear(self) -> None:
        """DELETE /inbox: forget the messages and the limits' counters."""
        self.inbox.clear()
        self.limiter.clear()

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault setting; requests held by "hold" go on (answered as usual)."""
        self.faults = faults
        self.release_held.set()
        self.release_held = asyncio.Event()


class SandboxHandler(tornado.web.RequestHandler):
    """Common helpers: shared state and JSON output."""

    answered: str | None = None  # the provider's code we answered, for the access log

    def initialize(self, state: SandboxState) -> None:
        self.state = state

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Write any JSON value (Tornado's write() refuses top-level lists)."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_CT)
        self.finish(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    def check_xsrf_cookie(self) -> None:  # an API, not a browser form
        pass


class ApiHandler(SandboxHandler):
    """A simulated provider endpoint: latency and the fault mode first, then the protocol."""

    def prepare(self) -> None:
        self._closed = asyncio.Event()

    def on_connection_close(self) -> None:
        # Wakes any latency/hang wait so abandoned requests do not linger.
        self._closed.set()

    async def _wait_or_closed(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: forever) without blocking the loop; True if the client left."""
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def serve_api(self, *args: str) -> None:
        """Apply latency and the fault mode, then answer(*args) unless a fault answers."""
        faults = self.state.faults
        mode = faults.take()
        if mode not in ("ok", "status"):
            self.answered = f"fault:{mode}"
        if faults.latency_ms and await self._wait_or_closed(faults.latency_ms / 1000):
            self.answered = "client-gone"
            return
        if mode == "hold" and await self._hold():
            self.answered = "client-gone"
        elif mode == "hold":
            self.answer(*args)
        elif mode == "hang":
            await self._wait_or_closed(None)
        elif mode == "close":
            self.request.connection.close()
        elif mode == "http500":
            self.answer_http500()
        elif mode == "garbage":
            self.set_header("Content-Type", "text/html;charset=utf-8")
            self.finish("<html>oops")
        elif mode == "status":
            self.answer_status(faults.status_code)
        else:
            self.answer(*args)

    async def _hold(self) -> bool:
        """Wait until the faults change; True if the client left first."""
        state = self.state
        state.held += 1
        try:
            released = asyncio.ensure_future(state.release_held.wait())
            closed = asyncio.ensure_future(self._closed.wait())
            await asyncio.wait({released, closed}, return_when=asyncio.FIRST_COMPLETED)
            released.cancel()
            closed.cancel()
            return self._closed.is_set()
        finally:
            state.held -= 1

    def answer(self, *args: str) -> None:
        """Run the protocol and answer in the provider's format."""
        raise NotImplementedError

    def answer_status(self, code: str) -> None:
        """Answer the provider's refusal `code` (fault mode "status")."""
        raise NotImplementedError

    def answer_http500(self) -> None:
        """The provider's HTTP 500 page (fault mode "http500")."""
        raise NotImplementedError


class InboxHandler(SandboxHandler):
    """GET /inbox[?mobile=] lists accepted messages; DELETE clears them and the counters."""

    def get(self) -> None:
        mobile = self.get_query_argument("mobile", None)
        self.write_json([m for m in self.state.inbox if mobile is None or m["to"] == mobile])

    def delete(self) -> None:
        self.state.clear()
        self.write_json({"status": "ok"})


class FaultsHandler(SandboxHandler):
    """GET/PUT/DELETE /faults: inspect, replace or reset the fault-injection setting."""

    def get(self) -> None:
        # `held`: API requests waiting in the "hold" mode right now (read-only).
        self.write_json({**asdict(self.state.faults), "held": self.state.held})

    def put(self) -> None:
        try:
            faults = self.state.faults_type.from_json(json.loads(self.request.body or b"null"))
        except (ValueError, TypeError) as err:
            self.write_json({"error": str(err)}, status=400)
            return
        self.state.set_faults(faults)
        self.write_json(asdict(self.state.faults))

    def delete(self) -> None:
        self.state.set_faults(self.state.faults_type())
        self.write_json(asdict(self.state.faults))


class HealthHandler(SandboxHandler):
    """GET /healthz."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


def make_app(
    state: SandboxState, api_routes: list[tuple[str, type[ApiHandler]]], log: logging.Logger
) -> tornado.web.Application:
    """The provider's API routes plus the control API (state in app.settings["sandbox_state"])."""
    args = {"state": state}
    control: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        (r"/inbox", InboxHandler),
        (r"/faults", FaultsHandler),
        (r"/callback", CallbackHandler),
        (r"/healthz", HealthHandler),
    ]
    return tornado.web.Application(
        [(path, handler, args) for path, handler in [*api_routes, *control]],
        log_function=_access_log(log),
        sandbox_state=state,
    )


def _access_log(log: logging.Logger) -> Callable[[tornado.web.RequestHandler], None]:
    """One line per request; never the query (signature) or the headers (Authorization)."""

    def log_request(handler: tornado.web.RequestHandler) -> None:
        request = handler.request
        log.info(
            "%s %s %d %s %.1fms",
            request.method,
            request.path,
            handler.get_status(),
            getattr(handler, "answered", None) or "-",
            1000 * request.request_time(),
        )

    return log_request


class _Settings(Protocol):
    report_url: str

    @classmethod
    def from_json_file(cls, path: str) -> Self: ...


SettingsT = TypeVar("SettingsT", bound=_Settings)


def parse_args(
    argv: list[str] | None, description: str, port: int, settings_type: type[SettingsT]
) -> tuple[argparse.Namespace, SettingsT]:
    """The command line every sandbox takes, and its settings (--config-json, --report-url)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config-json", help=f"JSON file overriding {settings_type.__name__}")
    parser.add_argument("--report-url", help="where to push delivery receipts")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = (
        settings_type.from_json_file(args.config_json) if args.config_json else settings_type()
    )
    if args.report_url:
        settings.report_url = args.report_url
    return args, settings


async def serve(
    app: tornado.web.Application, args: argparse.Namespace, log: logging.Logger, name: str
) -> int:
    """Serve until SIGINT/SIGTERM, then shut down cleanly."""
    server = tornado.httpserver.HTTPServer(app)
    server.listen(args.port, address=args.host)
    log.info("%s sandbox listening on http://%s:%d", name, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    try:
        # Closing connections also releases requests held by the "hang" fault.
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except TimeoutError:
        log.warning("some connections did not close in time")
    return 0
