"""nginx in front of two instances when one of them stops or hangs: requests move to the
other, a GET is retried, a POST an instance received is never sent twice."""

from __future__ import annotations

import pytest

from tests.flows import post
from tests.nginx.helpers import BlackHole, Nginx, address, browser, live_servers

# --- upstream failures -------------------------------------------------------------------


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
