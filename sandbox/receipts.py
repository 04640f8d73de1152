"""Delivery-receipt pushes shared by the sandboxes: delayed, and shaped by the fault setting.

Receipt modes: delivered (default), failed, late (after an extra `late_ms`), twice (the same
report pushed two times), never.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import tornado.httpclient
import tornado.web

RECEIPT_MODES = ("delivered", "failed", "late", "twice", "never")

log = logging.getLogger("sandbox.receipts")


class ReceiptPusher:
    """Posts reports to the configured callback URL in the background, never blocking a send."""

    def __init__(self, delay_ms: tuple[int, int] | list[int]) -> None:
        self.url = ""
        self.delay_ms = (int(delay_ms[0]), int(delay_ms[1]))
        self.pushed = 0
        self._http = tornado.httpclient.AsyncHTTPClient()
        self._tasks: set[asyncio.Task] = set()

    def schedule(
        self,
        mode: str,
        late_ms: int,
        build: Callable[[bool], tuple[bytes, str]],
        url: str | None = None,
    ) -> None:
        """Push build(delivered) -> (body, content type) after a delay, as `mode` says.

        `url`: this message's own callback (a voice call's respUrl), else the configured one.
        """
        url = url or self.url
        if not url or mode == "never":
            return
        delay = random.uniform(*self.delay_ms) / 1000
        if mode == "late":
            delay += late_ms / 1000
        copies = 2 if mode == "twice" else 1
        task = asyncio.ensure_future(self._push(url, build, mode != "failed", delay, copies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(
        self,
        url: str,
        build: Callable[[bool], tuple[bytes, str]],
        delivered: bool,
        delay: float,
        copies: int,
    ) -> None:
        await asyncio.sleep(delay)  # the carrier's delivery time, simulated
        body, content_type = build(delivered)
        for _ in range(copies):
            try:
                response = await self._http.fetch(
                    url,
                    method="POST",
                    headers={"Content-Type": content_type},
                    body=body,
                    raise_error=False,
                    connect_timeout=2,
                    request_timeout=5,
                )
                self.pushed += 1
                log.info("receipt push -> HTTP %s", response.code)
            except Exception as exc:  # the receiver is down: the real platforms retry later
                log.warning("receipt push failed: %s", exc)


class CallbackHandler(tornado.web.RequestHandler):
    """GET/PUT /callback {"url": ...}: where receipts are pushed (settings' report_url)."""

    def initialize(self, state: Any) -> None:
        self.state = state

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json;charset=utf-8")
        self.finish(json.dumps(payload))

    def get(self) -> None:
        self.write_json({"url": self.state.pusher.url})

    def put(self) -> None:
        try:
            url = json.loads(self.request.body or b"null")["url"]
        except (ValueError, TypeError, KeyError):
            url = None
        if not isinstance(url, str) or not (url == "" or url.startswith(("http://", "https://"))):
            self.write_json({"error": 'expected {"url": "http(s)://..."} or ""'}, status=400)
            return
        self.state.pusher.url = url
        self.write_json({"url": url})
