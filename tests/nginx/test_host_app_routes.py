"""docs/deploy/host-apps/*.conf: which requests real nginx sends to smsreg and which to the host
app, for each tutorial app. Two small upstreams stand for both and answer with their name (the
apps themselves behind these very files: tests/browser/test_host_apps.py)."""

from __future__ import annotations

import json

import pytest
import tornado.httpclient
import tornado.testing
import tornado.web

from tests.conftest import ROOT
from tests.nginx.helpers import HostAppNginx

US, HOST = "smsreg", "host"
# Every static file of ours that our pages load (the console's ops.css is not routed: the
# console is reached on the instances themselves).
OUR_STATIC = sorted(
    path.relative_to(ROOT / "static").as_posix()
    for path in (ROOT / "static").rglob("*")
    if path.is_file() and path.name != "ops.css"
)
BOTH = [
    ("GET", "/api/v1.0/session", US),
    ("POST", "/api/v1.0/password_reset", US),
    ("PUT", "/api/v1.0/user/mobile", US),
    ("POST", "/api/v1.0/tokens/refresh", US),
    ("POST", "/callbacks/ronglian/sms", US),
    ("GET", "/.well-known/jwks.json", US),
    ("GET", "/", HOST),
    ("GET", "/metrics", HOST),  # the instances' ops routes stay off the public site
    ("GET", "/ops", HOST),
]
ROUTES = {
    "ihome": [
        ("GET", "/api/v1.0/image_codes/abc", US),
        ("GET", "/api/v1.0/sms_codes/13800138000?image_code=A&image_code_id=b", US),
        ("POST", "/api/v1.0/sms_codes", US),
        ("GET", "/api/v1.0/sms_sends/abc", US),
        ("POST", "/api/v1.0/users", US),
        ("POST", "/api/v1.0/sessions", US),
        ("DELETE", "/api/v1.0/session", US),
        ("GET", "/api/v1.0/user", US),
        ("PUT", "/api/v1.0/user/password", US),
        ("GET", "/api/v1.0/user/sessions", US),
        ("DELETE", "/api/v1.0/user/sessions/abc", US),
        ("POST", "/api/v1.0/tokens", US),
        ("GET", "/register.html", US),
        ("GET", "/my.html", US),
        ("GET", "/brand.css", US),
        ("POST", "/api/v1.0/user/avatar", HOST),
        ("PUT", "/api/v1.0/user/name", HOST),
        ("GET", "/api/v1.0/user/auth", HOST),
        ("GET", "/api/v1.0/user/houses", HOST),
        ("GET", "/api/v1.0/users/1", HOST),
        ("GET", "/api/v1.0/sessionsx", HOST),
        ("GET", "/api/v1.0/houses/index", HOST),
        ("GET", "/api/v1.0/areas", HOST),
        ("GET", "/index.html", HOST),
        ("GET", "/search.html", HOST),
        ("GET", "/static/js/ihome/register.js", HOST),
        ("GET", "/static/js/jquery.min.js", HOST),
        ("GET", "/static/css/reset.css", HOST),
        ("GET", "/static/html/register.html", HOST),
        ("GET", "/register/", HOST),
    ],
    "meiduo": [
        ("GET", "/image_codes/0f6a7c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b/", US),
        ("GET", "/sms_codes/13800138000/?image_code=A&uuid=b", US),
        ("GET", "/mobiles/13800138000/count/", US),
        ("GET", "/usernames/user_1/count/", US),
        ("POST", "/register/", US),
        ("POST", "/login/", US),
        ("GET", "/logout/", US),
        ("GET", "/register/", HOST),
        ("GET", "/login/", HOST),
        ("HEAD", "/login/", HOST),
        ("GET", "/info/", HOST),
        ("POST", "/carts/", HOST),
        ("GET", "/static/js/common.js", HOST),
        ("GET", "/static/js/register.js", HOST),
        ("GET", "/register.html", HOST),
    ],
    "news": [
        ("GET", "/passport/image_code?imageCodeId=abc", US),
        ("POST", "/passport/sms_code", US),
        ("POST", "/passport/register", US),
        ("POST", "/passport/login", US),
        ("GET", "/passport/logout", US),
        ("GET", "/reset_password.html", US),
        ("GET", "/my.html", US),
        ("GET", "/news_list?cid=1&page=1", HOST),
        ("GET", "/news/1", HOST),
        ("GET", "/user/info", HOST),
        ("GET", "/admin/login", HOST),
        ("GET", "/static/news/js/main.js", HOST),
        ("GET", "/static/admin/js/login.js", HOST),
    ],
}
OUR_PAGES_ROUTED = ("ihome", "news")


class Named(tornado.web.RequestHandler):
    """An upstream that answers which app it is, and the method, path and Host it got."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")

    def initialize(self, name: str) -> None:
        self.name = name

    def answer(self, path: str) -> None:
        request = self.request
        self.set_header("X-App", self.name)
        self.finish({"app": self.name, "uri": request.uri, "host": request.headers["Host"]})

    get = head = post = put = delete = answer


def upstream(name: str) -> tuple[tornado.httpserver.HTTPServer, str]:
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/(.*)", Named, {"name": name})])
    )
    server.add_sockets([sock])
    return server, f"127.0.0.1:{port}"


@pytest.fixture(params=sorted(ROUTES))
def site(request, io_loop, tmp_path):
    """nginx with one host-app file, between the two named upstreams."""
    (ours, our_address), (host, host_address) = upstream(US), upstream(HOST)
    proxy = HostAppNginx(tmp_path / "nginx", request.param, our_address, host_address)
    proxy.start()
    yield request.param, proxy
    proxy.stop()
    ours.stop()
    host.stop()


@pytest.mark.gen_test(timeout=60)
async def test_each_request_goes_to_its_app(site):
    kind, proxy = site
    http = tornado.httpclient.AsyncHTTPClient()
    expected = BOTH + ROUTES[kind]
    if kind in OUR_PAGES_ROUTED:
        expected += [("GET", f"/static/{path}", US) for path in OUR_STATIC]
    went = {}
    for method, uri, _ in expected:
        response = await http.fetch(
            proxy.base_url + uri,
            method=method,
            body="{}" if method in ("POST", "PUT") else None,
            raise_error=False,
        )
        assert response.code == 200, (method, uri, response.code)
        went[method, uri] = response.headers["X-App"]
        if method != "HEAD":
            answer = json.loads(response.body)
            # The request as the client sent it, with the Host and its port (Django's CSRF
            # check compares a form's Origin with it).
            assert (answer["uri"], answer["host"]) == (uri, f"127.0.0.1:{proxy.port}")
    assert went == {(method, uri): app for method, uri, app in expected}
