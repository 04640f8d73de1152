"""Two server.py instances sharing Redis, MariaDB and the sandbox; alone and behind nginx
(docs/deploy/nginx.conf itself, rendered with this test's ports): journeys and the IP limit.
"""

from __future__ import annotations

import json

import pytest

from services.store import keys
from tests.flows import PASSWORD, assert_refusal, post, register, send
from tests.nginx.helpers import IP_LIMIT, address, browser, logout

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
    All her requests count on 127.0.0.2's SMS count; at IP_LIMIT she is refused, and going
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
