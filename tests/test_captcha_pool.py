"""The shipped CAPTCHA set-up: images drawn in a render process, a pool drawn ahead."""

from __future__ import annotations

import os

import pytest

from services import keys
from tests.conftest import serving
from tests.polling import async_wait_until


@pytest.mark.gen_test(timeout=60)
async def test_images_come_from_render_process_and_ready_pool(make_app):
    app = await make_app(captcha={"render_processes": 1, "pool_size": 16})
    captchas = app.services.captchas

    async def ready() -> int:  # the pool fills in the background, off the loop
        return len(captchas._ready)

    await async_wait_until(ready, lambda n: n >= 16, what="16 CAPTCHAs drawn ahead")
    render_pids = {p.pid for p in captchas._render_executor._processes.values()}
    assert render_pids and os.getpid() not in render_pids
    async with serving(app) as client:
        texts = [await client.new_captcha(f"pool-{i}") for i in range(40)]  # more than the pool
    assert len(set(texts)) > 30  # random texts, each stored under its own id
    redis = app.services.redis
    for i, text in enumerate(texts):
        assert await redis.get(keys.captcha_key(f"pool-{i}")) == text


@pytest.mark.gen_test(timeout=60)
async def test_pooled_captcha_flow_sends_sms(make_app, sandbox, fresh_mobile):
    app = await make_app(captcha={"render_processes": 1, "pool_size": 4})
    async with serving(app) as client:
        mobile = fresh_mobile()
        text = await client.new_captcha("pooled")
        assert (await client.send_sms(mobile, text, "pooled"))["errno"] == "0"
        assert len(sandbox.inbox(mobile)) == 1
