"""IPv6 clients (issue 10 item 12): counted by /64, served on real IPv6 loopback (::1)."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request

import pytest
import tornado.httpclient
import tornado.netutil

from server import make_http_server
from services.clientip import client_network
from tests.conftest import LiveServer


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(),
    reason="this machine has no IPv6 loopback (::1 cannot be bound): IPv6 serving not tested",
)


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),  # IPv4: the address itself
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),  # one spelling per network
        ("2001:db8:1:2::1", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2::1", 128, "2001:db8:1:2::1"),  # full length: the address itself
        ("::ffff:203.0.113.7", 64, "203.0.113.7"),  # IPv4-mapped: counted as the IPv4 client
        ("::1", 64, "::/64"),
        ("not-an-ip", 64, "not-an-ip"),
    ],
)
def test_client_network(address, prefix, expected):
    assert client_network(address, ipv6_prefix=prefix) == expected


@contextlib.asynccontextmanager
async def serving_on_ipv6(app):
    """The app served on [::1] only: every request really arrives over IPv6."""
    [sock] = tornado.netutil.bind_sockets(0, "::1", family=socket.AF_INET6)
    port = sock.getsockname()[1]
    server = make_http_server(app, app.services.config)
    server.add_sockets([sock])
    try:
        yield f"http://[::1]:{port}"
    finally:
        server.stop()
        await server.close_all_connections()


async def captcha_status(base_url: str, captcha_id: str, forwarded_for: str | None) -> dict | int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{base_url}/api/v1.0/image_codes/{captcha_id}", headers=headers, raise_error=False
    )
    if response.headers["Content-Type"] == "image/jpeg":
        return 200
    return json.loads(response.body)


@needs_ipv6
@pytest.mark.gen_test(timeout=30)
async def test_one_ipv6_64_is_one_client(make_app):
    # Behind a proxy on ::1 that reports the client: one /64 rotating its addresses is one
    # client; the next /64 is another; IPv4 clients are still counted one by one.
    app = await make_app(
        security={"trusted_proxies": "::1/128"}, limits={"captcha_per_ip_minute": 3}
    )
    async with serving_on_ipv6(app) as base_url:
        for i in range(3):
            assert await captcha_status(base_url, f"v6-{i}", f"2001:db8:1:2::{i + 1:x}") == 200
        refused = await captcha_status(base_url, "v6-3", "2001:db8:1:2:ffff::9")
        assert refused["data"]["reason"] == "captcha_ip_minute"
        assert await captcha_status(base_url, "v6-4", "2001:db8:1:3::1") == 200
        for i in range(3):
            assert await captcha_status(base_url, f"v4-{i}", f"203.0.113.{i}") == 200


@needs_ipv6
@pytest.mark.gen_test(timeout=30)
async def test_ipv6_prefix_is_configurable(make_app):
    app = await make_app(
        security={"trusted_proxies": "::1/128", "ipv6_prefix": 48},
        limits={"captcha_per_ip_minute": 1},
    )
    async with serving_on_ipv6(app) as base_url:
        assert await captcha_status(base_url, "p-0", "2001:db8:1:2::1") == 200
        refused = await captcha_status(base_url, "p-1", "2001:db8:1:7::1")  # same /48
        assert refused["data"]["reason"] == "captcha_ip_minute"


@needs_ipv6
@pytest.mark.gen_test(timeout=30)
async def test_direct_ipv6_peer_is_counted_by_its_64(make_app):
    app = await make_app(limits={"captcha_per_ip_minute": 2})
    async with serving_on_ipv6(app) as base_url:
        assert await captcha_status(base_url, "d-0", None) == 200
        assert await captcha_status(base_url, "d-1", None) == 200
        refused = await captcha_status(base_url, "d-2", None)
        assert refused["errno"] == "4201"
        redis = app.services.redis
        assert await redis.exists("captcha:ip:{::/64}:minute")  # the peer ::1, by its /64


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@needs_ipv6
def test_server_listens_on_ipv6_and_ipv4(config, clean_state, tmp_path):
    server = LiveServer(config, tmp_path / "server.log", {"SMSREG_SERVER_HOST": "127.0.0.1, ::1"})
    server.start()
    try:
        assert get_json(f"http://[::1]:{server.port}/healthz") == {"status": "ok"}
        assert get_json(f"http://127.0.0.1:{server.port}/healthz") == {"status": "ok"}
    finally:
        assert server.stop() == 0


@needs_ipv6
def test_server_listens_on_all_ipv6_addresses(config, clean_state, tmp_path):
    server = LiveServer(config, tmp_path / "server.log", {"SMSREG_SERVER_HOST": "::"})
    server.wait_address = "::1"
    server.start()
    try:
        assert get_json(f"http://[::1]:{server.port}/healthz") == {"status": "ok"}
    finally:
        assert server.stop() == 0
