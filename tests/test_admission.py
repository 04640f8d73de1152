"""Graceful overload (services/codes/admission.py): a send over the in-flight limit is shed at once.

The real server process, the real sandbox. The sandbox's "hold" fault keeps the admitted sends
waiting at the provider until the test lets them go, so the in-flight slots are full for as
long as the test needs them (no timing): the next send must get a 503 with Retry-After while
they are still held, must leave nothing behind (its CAPTCHA still usable, no guard, no code,
no count), and the held sends must complete once released.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import redis as sync_redis

from services.store import keys
from tests.conftest import LiveServer
from tests.polling import wait_until

RETRY_AFTER = 3
LIMIT = 2


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET url; (status, headers, body), HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Sender:
    """A browser of the ihome (or meiduo) front-end against the live server."""

    def __init__(self, server: LiveServer, redis: sync_redis.Redis) -> None:
        self.base = server.base_url
        self.redis = redis

    def captcha(self, captcha_id: str) -> str:
        status, _, _ = get(f"{self.base}/api/v1.0/image_codes/{captcha_id}")
        assert status == 200
        return self.redis.get(keys.captcha_key(captcha_id)).decode()

    def send(self, mobile: str, captcha_id: str, text: str) -> tuple[int, dict[str, str], dict]:
        query = urllib.parse.urlencode({"image_code": text, "image_code_id": captcha_id})
        status, headers, body = get(f"{self.base}/api/v1.0/sms_codes/{mobile}?{query}")
        return status, headers, json.loads(body)

    def meiduo_send(self, mobile: str, captcha_id: str, text: str) -> tuple[int, dict, dict]:
        query = urllib.parse.urlencode({"image_code": text, "uuid": captcha_id})
        status, headers, body = get(f"{self.base}/sms_codes/{mobile}/?{query}")
        return status, headers, json.loads(body)

    def json_send(self, path: str, fields: dict[str, str]) -> tuple[int, dict, dict]:
        """POST a JSON send (ihome's /api/v1.0/sms_codes, news' /passport/sms_code) as the
        front-ends do: XSRF cookie and header."""
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=json.dumps(fields).encode(),
            headers={
                "Content-Type": "application/json",
                "Cookie": "_xsrf=adm-token",
                "X-XSRFToken": "adm-token",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, headers, body = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, dict(error.headers), error.read()
        return status, headers, json.loads(body)

    def metric(self, pattern: bytes) -> float:
        _, _, body = get(f"{self.base}/metrics")
        match = re.search(pattern + rb" (\S+)$", body, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def in_flight(self) -> float:
        _, _, body = get(f"{self.base}/metrics")
        assert re.search(rb"^smsreg_sms_sends_in_flight ", body, re.MULTILINE), "exported"
        return self.metric(rb"^smsreg_sms_sends_in_flight")


@contextlib.contextmanager
def live_sender(config, redis_server, tmp_path, env: dict[str, str]) -> Iterator[Sender]:
    """The real server process with admission settings `env`, and a Sender to it."""
    env = {
        **env,
        "SMSREG_ADMISSION_RETRY_AFTER": str(RETRY_AFTER),
        # Every send comes from 127.0.0.1 and none is verified: keep the fraud breaker quiet.
        "SMSREG_FRAUD_MIN_SENDS": "100000",
        # The held sends must outlive the test's checks (they are released explicitly).
        "SMSREG_RONGLIAN_REQUEST_TIMEOUT": "60",
    }
    server = LiveServer(config, tmp_path / "server.log", env).start()
    try:
        with sync_redis.Redis(port=redis_server.port) as redis:
            sender = Sender(server, redis)
            sender.log_path = server.log_path
            yield sender
    finally:
        server.stop()


@pytest.fixture(
    params=[
        {"SMSREG_ADMISSION_MAX_SENDS_IN_FLIGHT": str(LIMIT)},
        # The provider's concurrency bounds admission too: no send waits in curl's queue.
        {"SMSREG_RONGLIAN_MAX_CLIENTS": str(LIMIT)},
    ],
    ids=["max_sends_in_flight", "provider_max_clients"],
)
def gated(request, config, clean_state, redis_server, tmp_path):
    with live_sender(config, redis_server, tmp_path, request.param) as sender:
        yield sender


@contextlib.contextmanager
def sends_held(gated: Sender, sandbox, fresh_mobile) -> Iterator[list]:
    """LIMIT admitted sends held at the provider (the in-flight slots full) while the block
    runs; then released, each must have succeeded."""
    mobiles = [fresh_mobile() for _ in range(LIMIT)]
    captchas = {m: gated.captcha(f"adm-{m}") for m in mobiles}
    sandbox.set_fault(mode="hold", times=LIMIT)
    with concurrent.futures.ThreadPoolExecutor(LIMIT) as pool:
        held = [pool.submit(gated.send, m, f"adm-{m}", captchas[m]) for m in mobiles]
        wait_until(lambda: sandbox.faults()["held"], lambda n: n == LIMIT, what="sends held")
        assert gated.in_flight() == LIMIT
        try:
            yield held
        finally:
            sandbox.reset_faults()  # never leave them held: the pool would wait for them
        for future in held:
            status, _, body = future.result(timeout=60)
            assert (status, body["errno"]) == (200, "0")
    assert [len(sandbox.inbox(m)) for m in mobiles] == [1] * LIMIT
    wait_until(gated.in_flight, lambda n: n == 0, what="in-flight gauge back to 0")


def test_over_the_limit_is_shed_at_once_and_leaves_nothing_behind(gated, sandbox, fresh_mobile):
    shed_mobile, meiduo_mobile = fresh_mobile(), fresh_mobile()
    captchas = {m: gated.captcha(f"adm-{m}") for m in (shed_mobile, meiduo_mobile)}
    with sends_held(gated, sandbox, fresh_mobile) as held:
        # Over the limit: answered while the admitted sends are still held, not queued.
        status, headers, body = gated.send(shed_mobile, f"adm-{shed_mobile}", captchas[shed_mobile])
        assert status == 503
        waited = int(headers["Retry-After"])
        assert RETRY_AFTER - 1 <= waited <= RETRY_AFTER + 1  # the base, spread (admission.py)
        assert body["errno"] == "4201"
        assert body["data"] == {"reason": "overloaded", "retry_after": waited}
        # meiduo's shape for the same refusal.
        status, headers, body = gated.meiduo_send(
            meiduo_mobile, f"adm-{meiduo_mobile}", captchas[meiduo_mobile]
        )
        assert status == 503
        assert headers["Retry-After"] == str(body["retry_after"])
        assert RETRY_AFTER - 1 <= body["retry_after"] <= RETRY_AFTER + 1
        assert (body["code"], body["reason"]) == ("4002", "overloaded")
        assert not any(f.done() for f in held), "the admitted sends are still held"

        # Nothing of the shed sends was used, counted or stored.
        redis = gated.redis
        for mobile in (shed_mobile, meiduo_mobile):
            assert redis.get(keys.captcha_key(f"adm-{mobile}")).decode() == captchas[mobile]
            assert not redis.exists(
                keys.sms_guard_key(mobile),
                keys.sms_code_key(mobile),
                keys.sms_mobile_hourly_key(mobile),
                keys.sms_mobile_daily_key(mobile),
            )
        assert int(redis.get(keys.sms_ip_hourly_key("127.0.0.1"))) == LIMIT
        assert int(redis.get(keys.sms_global_hourly_key())) == LIMIT
    # Released, the admitted sends completed (sends_held checks).

    # The shed request can simply be repeated, with the very same CAPTCHA.
    status, _, body = gated.send(shed_mobile, f"adm-{shed_mobile}", captchas[shed_mobile])
    assert (status, body["errno"]) == (200, "0")
    assert len(sandbox.inbox(shed_mobile)) == 1
    assert sandbox.inbox(meiduo_mobile) == []


def test_every_send_route_sheds_in_its_family_shape_logged_and_counted(
    gated, sandbox, fresh_mobile
):
    """Sheds are answered before a handler is built (handlers/shedding.py): each send route
    in its own JSON shape, with a request id that its access line carries, counted as a
    refusal; a route that sends nothing is served as usual meanwhile."""
    overloaded = rb'^smsreg_refusals_total\{reason="overloaded"\}'
    counted_before = gated.metric(overloaded)
    mobile = fresh_mobile()
    fields = {"mobile": mobile, "image_code": "ABCD", "image_code_id": "adm-json"}
    with sends_held(gated, sandbox, fresh_mobile) as held:
        answers = {
            "ihome GET": gated.send(mobile, "adm-json", "ABCD"),
            "ihome JSON": gated.json_send("/api/v1.0/sms_codes", fields),
            "news JSON": gated.json_send("/passport/sms_code", fields),
            "meiduo GET": gated.meiduo_send(mobile, "adm-json", "ABCD"),
        }
        for route, (status, headers, body) in answers.items():
            assert status == 503, route
            assert headers["Content-Type"] == "application/json; charset=UTF-8", route
            assert headers["Cache-Control"] == "no-store", route
            reason = body["reason"] if route.startswith("meiduo") else body["data"]["reason"]
            code = body["code"] if route.startswith("meiduo") else body["errno"]
            assert (code, reason) == (
                "4002" if route.startswith("meiduo") else "4201",
                "overloaded",
            )
            assert re.fullmatch(r"[0-9a-f]{16}", headers["X-Request-Id"]), route
        # A route that sends nothing is not shed.
        status, _, _ = get(f"{gated.base}/api/v1.0/image_codes/adm-meanwhile")
        assert status == 200
        assert not any(f.done() for f in held)
    assert gated.metric(overloaded) == counted_before + len(answers)
    log = gated.log_path.read_text()
    for route, (_, headers, _) in answers.items():
        line = next(line for line in log.splitlines() if headers["X-Request-Id"] in line)
        assert " 503 " in f" {line} " and "errno=4" in line, (route, line)
    assert sandbox.inbox(mobile) == []


def test_refused_and_failed_sends_give_their_slot_back(gated, sandbox, fresh_mobile):
    """A send that ends in a refusal or a provider failure does not keep its place."""
    mobile = fresh_mobile()
    # More refusals and failures than there are slots, one after the other.
    for attempt in range(LIMIT + 1):
        status, _, body = gated.send(mobile, f"adm-wrong-{attempt}", "XXXX")
        assert (status, body["errno"]) == (200, "4002")  # no such CAPTCHA
    # LIMIT failures: fewer than failover.breaker_failures (3), which would open the circuit.
    sandbox.set_fault(mode="http500", times=LIMIT)
    for attempt in range(LIMIT):
        text = gated.captcha(f"adm-fail-{attempt}")
        status, _, body = gated.send(mobile, f"adm-fail-{attempt}", text)
        assert (status, body["errno"]) == (200, "4301")
    assert gated.in_flight() == 0
    text = gated.captcha("adm-ok")
    status, _, body = gated.send(mobile, "adm-ok", text)
    assert (status, body["errno"]) == (200, "0")


JUNK_CONNECTIONS = 32
HONEST_ROUNDS = 8  # of LIMIT concurrent sends each: 16 SMS, within limits.sms_per_ip_hour
PROVIDER_DELAY_MS = 300


def test_wrong_captchas_cannot_take_the_places_of_honest_sends(
    config, clean_state, redis_server, tmp_path, sandbox, fresh_mobile
):
    """Issue 27, item 5: sends with wrong CAPTCHAs from one address over many connections
    must not fill the in-flight places. A send takes a place only once its reservation (the
    CAPTCHA used up, every limit taken) succeeded, so junk never holds one, and honest sends,
    LIMIT at a time (a slow provider keeps them in flight), are all served meanwhile."""
    env = {"SMSREG_ADMISSION_MAX_SENDS_IN_FLIGHT": str(LIMIT)}
    with live_sender(config, redis_server, tmp_path, env) as sender:
        sandbox.set_fault(latency_ms=PROVIDER_DELAY_MS)
        stop = threading.Event()
        junk_answers: list[tuple[int, str]] = []

        def junk(connection: int) -> None:
            mobile, attempt = fresh_mobile(), 0
            while not stop.is_set():
                attempt += 1
                status, _, body = sender.send(mobile, f"junk-{connection}-{attempt}", "XXXX")
                junk_answers.append((status, body["errno"]))

        honest: dict[str, tuple[int, str, object]] = {}
        with concurrent.futures.ThreadPoolExecutor(JUNK_CONNECTIONS) as junk_pool:
            flooding = [junk_pool.submit(junk, c) for c in range(JUNK_CONNECTIONS)]
            try:
                wait_until(
                    lambda: len(junk_answers),
                    lambda n: n >= 2 * JUNK_CONNECTIONS,
                    what="the junk flowing",
                )
                for _ in range(HONEST_ROUNDS):
                    mobiles = [fresh_mobile() for _ in range(LIMIT)]
                    texts = {m: sender.captcha(f"honest-{m}") for m in mobiles}
                    with concurrent.futures.ThreadPoolExecutor(LIMIT) as pool:
                        sends = {
                            m: pool.submit(sender.send, m, f"honest-{m}", texts[m]) for m in mobiles
                        }
                        for mobile, future in sends.items():
                            status, _, body = future.result(timeout=60)
                            honest[mobile] = (status, body["errno"], body.get("data"))
            finally:
                stop.set()
            for flood in flooding:
                flood.result(timeout=60)  # a junk connection that failed fails the test

        refused = {m: answer for m, answer in honest.items() if answer[:2] != (200, "0")}
        assert refused == {}, f"{len(refused)} of {len(honest)} honest sends refused"
        assert [len(sandbox.inbox(m)) for m in honest] == [1] * len(honest)
        # The junk got its CAPTCHA refusal (or, while honest sends filled the places, the
        # cheap early 503) and took no limit: the address counts the honest sends only.
        assert (200, "4002") in junk_answers
        assert set(junk_answers) <= {(200, "4002"), (503, "4201")}
        assert int(sender.redis.get(keys.sms_ip_hourly_key("127.0.0.1"))) == len(honest)
