"""handlers/signed_cookies.py, no server: a signed cookie is accepted exactly when Tornado's
decode_signed_value accepts it, though its signature is checked only once per value."""

from __future__ import annotations

import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from handlers.signed_cookies import VerifiedCookies, cookie_value

SECRET = "a-cookie-secret-of-some-length-0123456789"
DAY = 86400
SIGNED_AT = 1_800_000_000


def signed(value: str, *, secret: str = SECRET, name: str = "session", version: int = 2) -> str:
    return tornado.web.create_signed_value(
        secret, name, value, version=version, clock=lambda: SIGNED_AT
    ).decode()


def tornado_says(cookie: str | None, now: float, name: str = "session") -> bytes | None:
    return tornado.web.decode_signed_value(SECRET, name, cookie, max_age_days=31, clock=lambda: now)


def test_accepted_and_refused_as_tornado_does_at_every_age():
    cookies = VerifiedCookies(SECRET)
    good = signed("42.some-session-token")
    tampered = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    others = {
        "good": good,
        "tampered": tampered,
        "another secret": signed("42.x", secret="another-secret-of-some-length-0123456789"),
        "another name": signed("42.x", name="csrf_token"),
        "version 1": signed("42.v1", version=1),
        "garbage": "2|1:0|10:1800000000|7:session|4:eHl6|deadbeef",
        "empty": "",
    }
    ages = (0, 1, 31 * DAY - 1, 31 * DAY, 31 * DAY + 1, 400 * DAY, -5 * DAY)
    for age in ages:  # the same object throughout: the later ages meet remembered values
        cookies.clock = lambda age=age: SIGNED_AT + age
        for what, cookie in others.items():
            expected = tornado_says(cookie, SIGNED_AT + age)
            assert cookies.value("session", cookie, 31) == expected, (what, age)
    cookies.clock = lambda: SIGNED_AT
    assert cookies.value("session", good, 31) == b"42.some-session-token"
    assert cookies.value("session", None, 31) is None
    cookies.clock = lambda: SIGNED_AT + 2 * DAY
    assert cookies.value("session", good, 1) is None  # a shorter max age, on a known value


def test_the_cookie_header_is_read_as_tornado_reads_it():
    headers = (
        'session="2|1:0|10:1800000000|7:session|4:eHl6|ab"; csrf_token=x',
        "a=1; session=plain; session=second",
        "no-equals; session=v",
        "",
    )
    for header in headers:
        start = RequestStartLine("GET", "/", "HTTP/1.1")
        request = HTTPServerRequest(
            start_line=start, headers=HTTPHeaders({"Cookie": header, "Host": "x"})
        )
        morsel = request.cookies.get("session")
        assert cookie_value(header, "session") == (morsel.value if morsel else None), header
    assert cookie_value(None, "session") is None
