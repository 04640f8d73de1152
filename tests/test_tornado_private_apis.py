"""Tornado's private APIs that handlers/ relies on: a Tornado upgrade that changes one fails here.

Two, each kept for a reason written beside it (docs/ARCHITECTURE.md, Decisions):
- handlers/shedding.py: `SheddingDelegate` subclasses `tornado.web._HandlerDelegate`, so a shed
  send is answered before a RequestHandler is built (246 µs instead of 409 µs of server CPU per
  shed, bench/results/shed-cost.json);
- handlers/base.py: `BaseHandler.requester` reads `RequestHandler._get_raw_xsrf_token()`, the
  unmasked XSRF token no public API gives.

requirements.txt pins Tornado; before raising the pin, run this file. No server, no store: the
delegate runs on a request fed to it directly, as Tornado's HTTP/1 connection would.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from types import SimpleNamespace
from typing import Any

import pytest
import tornado
import tornado.web
from tornado import httputil

from handlers.application import SmsRegApplication
from handlers.base import ApiHandler, BaseHandler
from handlers.shedding import SheddingDelegate
from services.codes.admission import Overloaded
from services.errors import Ret, ServiceError

RECHECK_SHEDDING = (
    f"Tornado {tornado.version} changed its private tornado.web._HandlerDelegate: re-check "
    "handlers/shedding.py (SheddingDelegate: the constructor Application.get_handler_delegate "
    "calls, finish() calling execute(), the attributes application, request, handler_class and "
    "connection) and SmsRegApplication.get_handler_delegate (handlers/application.py), then run "
    "tests/test_admission.py. Without the delegate a shed costs a whole handler again "
    "(409 µs instead of 246 µs, bench/results/shed-cost.json)."
)
RECHECK_XSRF = (
    f"Tornado {tornado.version} changed its private RequestHandler._get_raw_xsrf_token: re-check "
    "BaseHandler.requester (handlers/base.py). It must stay the same digest of the unmasked "
    "token of the browser's _xsrf cookie (the owner of a CAPTCHA id, docs/REDIS_KEYS.md "
    "image_code:<id>:owner), stable across requests while xsrf_token is masked anew."
)
DELEGATE_PARAMETERS = [
    "self",
    "application",
    "request",
    "handler_class",
    "handler_kwargs",
    "path_args",
    "path_kwargs",
]


class RecordingConnection:
    """What the delegate and a RequestHandler use of Tornado's HTTP/1 connection."""

    def __init__(self) -> None:
        self.start_line: httputil.ResponseStartLine | None = None
        self.headers: httputil.HTTPHeaders | None = None
        self.body = b""
        self.finished = asyncio.get_running_loop().create_future()

    def set_close_callback(self, callback: Any) -> None:
        pass

    def write_headers(
        self,
        start_line: httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        self.start_line, self.headers = start_line, headers
        return self.write(chunk or b"")

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        self.body += chunk
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def finish(self) -> None:
        self.finished.set_result(None)


class ProbeSendHandler(tornado.web.RequestHandler):
    """A route that sends an SMS, as far as the shedding path is concerned."""

    route_name = "probe_send"
    sends_sms = frozenset({"POST"})
    family_envelope = staticmethod(ApiHandler.family_envelope)

    def post(self) -> None:
        self.finish("sent")


class ProbeApplication(SmsRegApplication):
    """SmsRegApplication's delegate choice and request id, with a gate and no services."""

    def __init__(self, refusal: ServiceError | None) -> None:
        tornado.web.Application.__init__(self, [(r"/send", ProbeSendHandler)])
        gate = SimpleNamespace(overloaded=lambda: refusal)
        self.services = SimpleNamespace(sms=gate)  # type: ignore[assignment]
        self.answers: list[tuple[str, int, str | None]] = []

    def log_answer(self, route: str, request: Any, status: int, **fields: Any) -> None:
        self.answers.append((route, status, fields["errno"]))


async def post_send(app: ProbeApplication) -> tuple[RecordingConnection, object]:
    """Feed POST /send to the application as Tornado's HTTP/1 connection does."""
    connection = RecordingConnection()
    start = httputil.RequestStartLine("POST", "/send", "HTTP/1.1")
    headers = httputil.HTTPHeaders({"Host": "probe"})
    request = httputil.HTTPServerRequest(
        connection=connection,  # type: ignore[arg-type]
        start_line=start,
        headers=headers,
    )
    delegate = app.find_handler(request)
    delegate.headers_received(start, headers)
    delegate.data_received(b"")
    delegate.finish()
    await asyncio.wait_for(connection.finished, 5)
    return connection, delegate


def test_the_handler_delegate_class_is_still_there():
    assert isinstance(getattr(tornado.web, "_HandlerDelegate", None), type), RECHECK_SHEDDING
    assert issubclass(SheddingDelegate, tornado.web._HandlerDelegate), RECHECK_SHEDDING
    assert issubclass(tornado.web._HandlerDelegate, httputil.HTTPMessageDelegate), RECHECK_SHEDDING


def test_the_handler_delegate_takes_what_the_application_passes():
    constructor = inspect.signature(tornado.web._HandlerDelegate.__init__)
    assert list(constructor.parameters) == DELEGATE_PARAMETERS, RECHECK_SHEDDING
    hook = inspect.signature(tornado.web.Application.get_handler_delegate)
    ours = inspect.signature(SmsRegApplication.get_handler_delegate)
    assert list(hook.parameters) == list(ours.parameters), RECHECK_SHEDDING
    execute = inspect.signature(tornado.web._HandlerDelegate.execute)
    assert list(execute.parameters) == ["self"], RECHECK_SHEDDING


@pytest.mark.gen_test(timeout=10)
async def test_a_shed_is_written_before_any_handler_exists():
    app = ProbeApplication(Overloaded(retry_after=3))
    connection, delegate = await post_send(app)
    assert type(delegate) is SheddingDelegate, RECHECK_SHEDDING
    assert getattr(delegate, "handler", None) is None, RECHECK_SHEDDING  # none was built
    assert connection.start_line is not None and connection.headers is not None
    assert connection.start_line.code == 503, RECHECK_SHEDDING
    assert connection.headers["Retry-After"] == "3", RECHECK_SHEDDING
    assert json.loads(connection.body)["errno"] == Ret.REQERR.code, RECHECK_SHEDDING
    assert app.answers == [("probe_send", 503, Ret.REQERR.code)], RECHECK_SHEDDING


@pytest.mark.gen_test(timeout=10)
async def test_an_admitted_send_runs_its_handler_through_the_base_delegate():
    connection, delegate = await post_send(ProbeApplication(None))
    assert isinstance(getattr(delegate, "handler", None), ProbeSendHandler), RECHECK_SHEDDING
    assert connection.start_line is not None and connection.start_line.code == 200
    assert connection.body == b"sent", RECHECK_SHEDDING


def probe_handler(cookie: str | None = None) -> tornado.web.RequestHandler:
    """A RequestHandler on a GET, with the given _xsrf cookie, as BaseHandler.requester sees it."""
    app = tornado.web.Application(xsrf_cookies=True)
    headers = httputil.HTTPHeaders({"Host": "probe"})
    if cookie is not None:
        headers["Cookie"] = f"_xsrf={cookie}"
    connection = SimpleNamespace(set_close_callback=lambda callback: None)
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=headers,
        connection=connection,  # type: ignore[arg-type]
    )
    return tornado.web.RequestHandler(app, request)


def requester(handler: tornado.web.RequestHandler) -> str:
    digest: str = BaseHandler.requester.fget(handler)  # type: ignore[attr-defined]
    return digest


def test_the_raw_xsrf_token_keeps_its_shape():
    raw = tornado.web.RequestHandler._get_raw_xsrf_token
    assert list(inspect.signature(raw).parameters) == ["self"], RECHECK_XSRF
    version, token, timestamp = probe_handler()._get_raw_xsrf_token()
    assert version is None, RECHECK_XSRF  # no cookie: a new token
    assert isinstance(token, bytes) and len(token) == 16, RECHECK_XSRF
    assert isinstance(timestamp, (int, float)), RECHECK_XSRF


def test_the_requester_is_the_browser_while_xsrf_token_is_masked_anew():
    first = probe_handler()
    first_requester = requester(first)
    _, raw, _ = first._get_raw_xsrf_token()
    assert first_requester == hashlib.sha256(raw).hexdigest()[:32], RECHECK_XSRF
    cookie = first._new_cookie["_xsrf"].value  # what the browser keeps
    again, once_more = probe_handler(cookie), probe_handler(cookie)
    assert again.xsrf_token != once_more.xsrf_token  # why the raw token is read at all
    assert requester(again) == requester(once_more) == first_requester, RECHECK_XSRF
    assert again._get_raw_xsrf_token()[0] == 2, RECHECK_XSRF  # read from the cookie
    assert requester(probe_handler()) != first_requester, RECHECK_XSRF  # another browser
