"""Forward auth: real nginx with docs/deploy/nginx.conf's /app/ (auth_request /auth/verify)
in front of a small upstream that echoes the headers it receives."""

from __future__ import annotations

import json

import pytest
import tornado.testing
import tornado.web

from tests.flows import register
from tests.nginx.helpers import Nginx, address, browser, logout


class EchoHeaders(tornado.web.RequestHandler):
    """The protected app: answers the headers nginx sent it, and remembers each request."""

    def initialize(self, seen: list[dict[str, str]]) -> None:
        self.seen = seen

    def get(self, path: str) -> None:
        headers = {name.lower(): value for name, value in self.request.headers.get_all()}
        # Every copy of X-User-Id that arrived: exactly nginx's one, never the client's too.
        headers["x-user-id-copies"] = ",".join(self.request.headers.get_list("X-User-Id"))
        self.seen.append(headers)
        self.finish(headers)


@pytest.fixture
def echo(io_loop):
    """The echo app on a free port of this test's loop: (its address, what it received)."""
    seen: list[dict[str, str]] = []
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/(.*)", EchoHeaders, {"seen": seen})])
    )
    server.add_sockets([sock])
    yield f"127.0.0.1:{port}", seen
    server.stop()


@pytest.fixture
def guarded(instances, echo, tmp_path):
    """nginx with the site file, its /app/ pointing at the echo app."""
    proxy = Nginx(tmp_path / "nginx", [address(server) for server in instances], echo[0])
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.mark.gen_test(timeout=90)
async def test_forward_auth_lets_signed_in_users_through(
    guarded, echo, config, sandbox, fresh_mobile
):
    _, seen = echo
    forged = {"X-User-Id": "999999", "X-User-Name": "admin"}
    async with browser(config, guarded.base_url) as client:
        outsider = await client.fetch("/app/whoami", headers=forged)
        assert outsider.code == 401
        assert seen == []  # a request without a login never reaches the app

        mobile = fresh_mobile()
        text = await client.new_captcha("fwd")
        assert (await client.send_sms(mobile, text, "fwd"))["errno"] == "0"
        assert (await register(client, mobile, sandbox.inbox(mobile)[0]["datas"][0]))[
            "errno"
        ] == "0"
        inside = await client.fetch("/app/whoami", headers=forged)
        assert inside.code == 200
        echoed = json.loads(inside.body)
        assert echoed["x-user-name"] == mobile
        user_id = echoed["x-user-id"]
        assert user_id.isdigit() and user_id != forged["X-User-Id"]
        assert seen[-1]["x-user-id-copies"] == user_id

        # A native app's bearer token passes too, without any cookie.
        token = await client.json(
            "/api/v1.0/tokens", "POST", {"mobile": mobile, "password": "s3cret-pass"}
        )
        client.cookies.clear()
        with_token = await client.fetch(
            "/app/x", headers={**forged, "Authorization": f"Bearer {token['access_token']}"}
        )
        assert with_token.code == 200 and json.loads(with_token.body)["x-user-id"] == user_id
        assert (await client.fetch("/auth/verify")).code == 404  # internal: nginx's only

    async with browser(config, guarded.base_url) as client:
        mobile_login = {"mobile": mobile, "password": "s3cret-pass"}
        headers = await client.xsrf_headers()
        assert (await client.json("/api/v1.0/sessions", "POST", mobile_login, headers))[
            "errno"
        ] == "0"
        assert (await client.fetch("/app/")).code == 200
        assert (await logout(client))["errno"] == "0"
        count = len(seen)
        assert (await client.fetch("/app/", headers=forged)).code == 401
        assert len(seen) == count
