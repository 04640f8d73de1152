"""docs/openapi.yaml against the real server process: generated requests and the documented flow.

Schemathesis generates requests from the document (valid and invalid ones) and sends them to
`python server.py`; every answer must be documented: no 5xx, a documented status code, content
type and headers, and a body matching the schema of its endpoint (errno/code enums, data shape).

Environment knobs for deeper local runs (not SMSREG_*: those are server settings):
  OPENAPI_FUZZ_EXAMPLES  cases per operation in the fuzzing phase (default 25; the coverage
                         phase adds its own boundary and missing-parameter cases)
  OPENAPI_FUZZ_SEED      seed of the generation (default fixed, so CI runs are reproducible)
"""

from __future__ import annotations

import collections
import os
import re
import urllib.parse

import pytest
import requests
import schemathesis
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.store import keys
from tests.conftest import ROOT, LiveServer, reset_state, session_config

SPEC_PATH = ROOT / "docs" / "openapi.yaml"
MAX_EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "20261121"))
# Each login checks a password hash (argon2id, ~0.1 s of CPU), unknown mobiles included.
SLOW_OPERATIONS = ["login", "newsLogin", "meiduoLogin"]

# The server's per-IP limits would turn most generated requests into 4201 refusals.
RAISED_LIMITS = {
    "SMSREG_LIMITS_CAPTCHA_PER_IP_MINUTE": "100000",
    "SMSREG_LIMITS_SMS_PER_IP_HOUR": "100000",
    "SMSREG_LIMITS_COUNT_PER_IP_MINUTE": "100000",
    "SMSREG_ACCOUNTS_LOGIN_MAX_FAILURES": "100000",
    "SMSREG_ACCOUNTS_LOGIN_IP_MAX_FAILURES": "100000",
    "SMSREG_ACCOUNTS_LOGIN_CAPTCHA_AFTER": "100000",
    "SMSREG_ACCOUNTS_LOGIN_GLOBAL_CAPTCHA_AFTER": "100000",
}

# What the document promises. Not negative_data_rejection / positive_data_acceptance: the
# server answers malformed input with HTTP 200 and errno 4103 (ihome's contract), not a 4xx.
# Not unsupported_method: its 405 answers carry no Allow header (and are not documented).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

MOBILE = "13700000042"
NEW_MOBILE = "13700000043"
PASSWORD = "openapi-pass-1"


def load_spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def load_schema(base_url: str | None = None):
    """The document as schemathesis sees it (base_url None: the document's servers entry)."""
    settings: dict = {
        "seed": SEED,
        "request-timeout": 10,
        # No example database: a run must not depend on what earlier runs found.
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "operations": [
            {
                "include-operation-id": SLOW_OPERATIONS,
                "generation": {"max-examples": max(1, MAX_EXAMPLES // 3)},
            }
        ],
    }
    if base_url:
        settings["base-url"] = base_url
    return schemathesis.openapi.from_path(SPEC_PATH, config=schemathesis.Config.from_dict(settings))


@pytest.fixture(scope="module")
def api_server(redis_server, mariadb_server, sandbox, tmp_path_factory):
    """server.py as a process for the whole module, with the per-IP limits out of the way.

    Module-scoped (Hypothesis refuses function-scoped fixtures around generated cases), so it
    resets the state and builds the config itself, once.
    """
    reset_state(redis_server, mariadb_server, sandbox)
    config = session_config(redis_server, mariadb_server, sandbox)
    log_path = tmp_path_factory.mktemp("openapi") / "server.log"
    server = LiveServer(config, log_path, extra_env=RAISED_LIMITS).start()
    yield server
    assert server.stop() == 0, log_path.read_text()


class Xsrf:
    """The _xsrf cookie and the X-CSRFToken header a browser sends on POST and DELETE."""

    def __init__(self, base_url: str) -> None:
        response = requests.get(f"{base_url}/api/v1.0/session", timeout=10)
        self.cookie = response.cookies["_xsrf"]
        self.token = response.cookies["csrf_token"]

    @property
    def kwargs(self) -> dict:
        return {"headers": {"X-CSRFToken": self.token}, "cookies": {"_xsrf": self.cookie}}


@pytest.fixture(scope="module")
def xsrf(api_server) -> Xsrf:
    return Xsrf(api_server.base_url)


@pytest.fixture(scope="module")
def api_schema(api_server):
    return load_schema(api_server.base_url)


def header(response, name: str) -> str:
    """A header of a schemathesis Response (lower-case names, lists of values)."""
    return (response.headers.get(name.lower()) or [""])[0]


class CaseLog:
    """Counts the generated cases per operation and the answers they got."""

    def __init__(self) -> None:
        self.per_operation: collections.Counter[str] = collections.Counter()
        self.answers: collections.Counter[str] = collections.Counter()

    def record(self, case, response) -> None:
        self.per_operation[case.operation.label] += 1
        outcome = "-"
        if header(response, "Content-Type").startswith("application/json") and response.content:
            body = response.json()
            outcome = str(body.get("errno", body.get("code", "-")))
        self.answers[f"{response.status_code}/{outcome}"] += 1

    def summary(self) -> str:
        total = sum(self.per_operation.values())
        answers = ", ".join(f"{key}: {n}" for key, n in sorted(self.answers.items()))
        return (
            f"schemathesis: {total} generated cases over {len(self.per_operation)} operations; "
            f"answers (HTTP status/errno or code): {answers}"
        )


@pytest.fixture(scope="module")
def case_log() -> CaseLog:
    return CaseLog()


# Loaded at import from the file; the server is given per call. (schemathesis's lazy
# `from_fixture` loader fails on pytest 9.2: it uses Node._nodeid, which pytest 9.2 removed.)
generated = load_schema()


@generated.parametrize()
def test_generated_requests_get_documented_answers(case, api_server, xsrf, case_log):
    # Every request carries a valid XSRF pair, so POST/DELETE bodies reach validation; cases
    # generated without the header (negative mode) are stripped of it by schemathesis -> 403.
    # Redirects are answers to check, not to follow.
    response = case.call_and_validate(
        base_url=api_server.base_url, checks=CHECKS, allow_redirects=False, **xsrf.kwargs
    )
    case_log.record(case, response)


def test_generated_cases_ran(case_log, capsys):
    """Reports the generated cases, and guards against a silent no-op after an upgrade."""
    if not case_log.per_operation:
        pytest.skip("the generated cases were deselected")
    with capsys.disabled():
        print(f"\n{case_log.summary()}")
    operations = [op for item in load_spec()["paths"].values() for op in item.values()]
    assert len(case_log.per_operation) == len(operations)
    assert sum(case_log.per_operation.values()) >= len(operations) * min(MAX_EXAMPLES, 10)


def test_documented_flow_answers_conform(api_server, api_schema, xsrf, redis_server, sandbox):
    """Success and refusal answers that random input does not reach, each checked by the schema."""
    import redis as sync_redis

    browser = requests.Session()

    def call(path: str, method: str, **fields):
        case = api_schema[path][method].Case(**fields)
        return case.call_and_validate(checks=CHECKS, session=browser, **xsrf.kwargs)

    def new_captcha(captcha_id: str) -> str:
        image = call(
            "/api/v1.0/image_codes/{image_code_id}",
            "GET",
            path_parameters={"image_code_id": captcha_id},
        )
        assert header(image, "Content-Type") == "image/jpeg"
        with sync_redis.Redis(port=redis_server.port, decode_responses=True) as client:
            return client.get(f"image_code:{captcha_id}")

    text = new_captcha("flow-1")
    audio = call(
        "/api/v1.0/image_codes/{image_code_id}/audio",
        "GET",
        path_parameters={"image_code_id": "flow-1"},
    )
    assert header(audio, "Content-Type") == "audio/wav"

    sms = "/api/v1.0/sms_codes/{mobile}"
    sent = call(
        sms,
        "GET",
        path_parameters={"mobile": MOBILE},
        query={"image_code": text.lower(), "image_code_id": "flow-1"},
    )
    body = sent.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", body["data"].pop("send_id"))
    assert body == {"errno": "0", "errmsg": "发送成功", "data": {"retry_after": 60}}
    used = call(
        sms,
        "GET",
        path_parameters={"mobile": MOBILE},
        query={"image_code": text, "image_code_id": "flow-1"},
    )
    assert used.json() == {"errno": "4002", "errmsg": "图片验证码失效"}
    code = sandbox.inbox(MOBILE)[-1]["datas"][0]

    text = new_captcha("flow-2")
    json_body = {"mobile": MOBILE, "image_code": text, "image_code_id": "flow-2"}
    again = call("/api/v1.0/sms_codes", "POST", body=json_body)
    assert again.json()["errno"] == "4201"
    assert again.json()["data"]["reason"] == "resend_interval"
    assert 1 <= int(header(again, "Retry-After")) <= 60

    body = {"mobile": MOBILE, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
    wrong_code = "000000" if code != "000000" else "111111"
    wrong = call("/api/v1.0/users", "POST", body={**body, "sms_code": wrong_code})
    assert wrong.json() == {"errno": "4004", "errmsg": "短信验证码错误，还可尝试4次"}
    registered = call("/api/v1.0/users", "POST", body=body)
    assert registered.json() == {"errno": "0", "errmsg": "注册成功"}
    assert "session" in browser.cookies

    who = call("/api/v1.0/session", "GET")
    assert who.json() == {"errno": "0", "errmsg": "true", "data": {"name": MOBILE}}
    profile = call("/api/v1.0/user", "GET").json()
    assert profile["errno"] == "0" and profile["data"]["mobile"] == MOBILE
    assert call("/api/v1.0/session", "DELETE").json() == {"errno": "0", "errmsg": "OK"}
    assert call("/api/v1.0/session", "GET").json() == {"errno": "4101", "errmsg": "false"}
    assert call("/api/v1.0/user", "GET").json()["errno"] == "4101"

    assert call("/api/v1.0/users", "POST", body=body).json()["errno"] == "4002"  # code used up
    text = new_captcha("flow-3")
    taken = call(
        "/sms_codes/{mobile}/",
        "GET",
        path_parameters={"mobile": MOBILE},
        query={"image_code": text, "uuid": "flow-3"},
    )
    assert taken.json()["code"] == "4002"  # the resend guard comes before "registered"
    count = call("/mobiles/{mobile}/count/", "GET", path_parameters={"mobile": MOBILE})
    assert count.json() == {"code": "0", "errmsg": "OK", "count": 1}

    login = "/api/v1.0/sessions"
    bad = call(login, "POST", body={"mobile": MOBILE, "password": "not-the-password"})
    assert bad.json() == {"errno": "4004", "errmsg": "用户名或密码错误"}
    good = call(login, "POST", body={"mobile": MOBILE, "password": PASSWORD})
    assert good.json() == {"errno": "0", "errmsg": "登录成功"}
    assert call("/api/v1.0/session", "GET").json()["data"] == {"name": MOBILE}
    news = call("/passport/login", "POST", body={"mobile": MOBILE, "passport": PASSWORD})
    assert news.json() == {"errno": "0", "errmsg": "登录成功"}
    assert call("/passport/logout", "GET").json() == {"errno": "0", "errmsg": "退出成功"}

    form = {"username": MOBILE, "password": PASSWORD}
    meiduo = api_schema["/login/"]["POST"].Case(body=form, query={"next": "/register.html"})
    redirect = meiduo.call_and_validate(
        checks=CHECKS, session=browser, allow_redirects=False, **xsrf.kwargs
    )
    assert redirect.status_code == 302
    assert header(redirect, "Location") == "/register.html"

    def code_for(mobile: str, purpose: str, captcha_id: str) -> str:
        """A code for purpose; the resend guard and the sandbox's 30 s rule passed over."""
        with sync_redis.Redis(port=redis_server.port) as client:
            client.delete(keys.sms_guard_key(mobile))
        sandbox.clear()
        text = new_captcha(captcha_id)
        ask = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id}
        sent = call("/api/v1.0/sms_codes", "POST", body={**ask, "purpose": purpose})
        assert sent.json()["errno"] == "0", sent.json()
        return sandbox.inbox(mobile)[-1]["datas"][0]

    by_code = {"mobile": MOBILE, "sms_code": code_for(MOBILE, "login", "flow-4")}
    assert call(login, "POST", body=by_code).json() == {"errno": "0", "errmsg": "登录成功"}
    reset = {"mobile": MOBILE, "sms_code": code_for(MOBILE, "reset_password", "flow-5")}
    reset |= {"password": PASSWORD, "password2": PASSWORD}
    answer = call("/api/v1.0/password_reset", "POST", body=reset).json()
    assert answer == {"errno": "0", "errmsg": "密码已重置"}
    change = {"mobile": NEW_MOBILE, "sms_code": code_for(NEW_MOBILE, "change_mobile", "flow-6")}
    change["password"] = PASSWORD
    answer = call("/api/v1.0/user/mobile", "PUT", body=change).json()
    assert answer["errno"] == "0" and answer["data"] == {"mobile": NEW_MOBILE, "name": NEW_MOBILE}
    text = new_captcha("flow-7")
    ask = {"mobile": "13700000044", "image_code": text, "image_code_id": "flow-7"}
    answer = call("/api/v1.0/sms_codes", "POST", body={**ask, "purpose": "reset_password"})
    assert answer.json() == {"errno": "4104", "errmsg": "用户不存在"}

    for ready in ("/healthz", "/readyz"):
        assert call(ready, "GET").status_code == 200
    assert "smsreg_requests_total" in call("/metrics", "GET").text


def validated(operation, response, **case_fields):
    """Check an answer the test got by other means against what the document says."""
    operation.Case(**case_fields).validate_response(response, checks=CHECKS)
    return response


def test_http_error_answers_conform(api_server, api_schema, xsrf):
    """403, 413, 404 and 400 are documented envelopes."""
    base = api_server.base_url
    users = api_schema["/api/v1.0/users"]["POST"]
    forbidden = users.Case(body={"mobile": MOBILE}).call_and_validate(checks=CHECKS)
    assert forbidden.status_code == 403

    login = api_schema["/api/v1.0/sessions"]["POST"]
    huge = {"mobile": MOBILE, "password": "x" * 20000}
    too_large = login.Case(body=huge).call_and_validate(checks=CHECKS, **xsrf.kwargs)
    assert too_large.status_code == 413

    image = api_schema["/api/v1.0/image_codes/{image_code_id}"]["GET"]
    not_found = requests.get(f"{base}/api/v1.0/image_codes/a/b", timeout=10)
    assert validated(image, not_found, path_parameters={"image_code_id": "a"}).status_code == 404

    sms = api_schema["/api/v1.0/sms_codes/{mobile}"]["GET"]
    query = "image_code=%FF&image_code_id=x"
    bad = requests.get(f"{base}/api/v1.0/sms_codes/{MOBILE}?{query}", timeout=10)
    fields = {"path_parameters": {"mobile": MOBILE}, "query": urllib.parse.parse_qs(query)}
    assert validated(sms, bad, **fields).status_code == 400

    meiduo = api_schema["/sms_codes/{mobile}/"]["GET"]
    bad = requests.get(f"{base}/sms_codes/{MOBILE}/?image_code=%FF&uuid=x", timeout=10)
    assert validated(meiduo, bad, path_parameters={"mobile": MOBILE}).json()["code"] == "4003"

    meiduo_image = api_schema["/image_codes/{uuid}/"]["GET"]
    missing = requests.get(f"{base}/image_codes/a/b/", timeout=10)
    assert validated(meiduo_image, missing, path_parameters={"uuid": "a"}).json()["code"] == "5003"
