"""The shipped CAPTCHA set-up: images drawn in a render process, a pool drawn ahead."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from services.errors import Ret
from services.store import keys
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


@pytest.mark.gen_test(timeout=60)
async def test_flood_beyond_the_pool_waits_for_the_next_batches(make_app):
    """More requests at once than images ready (or served at once): each gets its own."""
    app = await make_app(captcha={"render_processes": 1, "pool_size": 4, "max_in_progress": 2})
    async with serving(app) as client:
        texts = await asyncio.gather(*(client.new_captcha(f"flood-{i}") for i in range(40)))
    assert all(texts) and len(set(texts)) > 30
    redis = app.services.redis
    for i, text in enumerate(texts):
        assert await redis.get(keys.captcha_key(f"flood-{i}")) == text


@pytest.mark.gen_test(timeout=60)
async def test_requests_waiting_for_a_broken_renderer_get_an_answer(make_app):
    """If the render process is gone, a request that waits for an image is answered, not hung."""
    app = await make_app(captcha={"render_processes": 1, "pool_size": 2})
    captchas = app.services.captchas

    async def ready() -> int:
        return len(captchas._ready)

    await async_wait_until(ready, lambda n: n >= 2, what="2 CAPTCHAs drawn ahead")
    captchas._render_executor.shutdown()

    async def refilling() -> int:
        return len(captchas._refills)

    await async_wait_until(refilling, lambda n: n == 0, what="batches in flight delivered")
    held = len(captchas._ready)
    async with serving(app) as client:
        for i in range(held):  # the pool still serves what it holds
            assert await client.new_captcha(f"broken-{i}")
        response = await client.fetch("/api/v1.0/image_codes/broken-last")
    assert response.code == 500
    assert json.loads(response.body)["errno"] == Ret.SERVERERR.code
