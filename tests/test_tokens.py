"""Tokens over HTTP: a third-party verifier (PyJWT's PyJWKClient fetching our JWKS), forged
tokens, bearer on every route that takes the session (no XSRF), CORS, revocation on reset and
on a change of mobile (standalone and Cluster)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Client, serving
from tests.flows import (
    NEW_PASSWORD,
    PASSWORD,
    add_user,
    change_mobile,
    code_for,
    last_code,
    password_login,
    reset,
)

pytestmark = pytest.mark.gen_test(timeout=90)
ALLOWED = "https://app.example.com"


async def token_login(client, mobile: str, password: str = PASSWORD) -> dict:
    """POST /api/v1.0/tokens as a native app: JSON, no cookie, no XSRF token."""
    return await client.json("/api/v1.0/tokens", "POST", {"mobile": mobile, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def native_app(client) -> Client:
    """A client with no cookies at all."""
    return Client(client.base_url, client.app)


def third_party_verify(base_url: str, token: str, audience: str = "smsreg-api") -> dict:
    """What another Python service does: PyJWKClient fetches our JWKS over HTTP."""
    keys = jwt.PyJWKClient(f"{base_url}/.well-known/jwks.json", cache_jwk_set=False)
    signing_key = keys.get_signing_key_from_jwt(token)
    return jwt.decode(token, signing_key, algorithms=["ES256"], audience=audience, issuer="smsreg")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(app, good: str) -> dict[str, str]:
    """Tokens that must not pass: each differs from a good one in one way."""
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    key = app.services.tokens.keyring.active
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).encode())
    hs_signature = hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256)
    stranger = ec.generate_private_key(ec.SECP256R1())
    sign = {"algorithm": "ES256", "headers": {"kid": key.kid, "typ": "at+jwt"}}
    now = int(time.time())
    return {
        "bad signature": f"{header}.{payload}.{signature[:-6]}AAAAAA",
        "another key": jwt.encode(claims, stranger, **sign),
        "alg none": f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{payload}.",
        "HS256 with the public key": f"{hs_header}.{payload}.{b64(hs_signature.digest())}",
        "unknown kid": jwt.encode(
            claims, key.private_key, algorithm="ES256", headers={"kid": "nope", "typ": "at+jwt"}
        ),
        "expired": jwt.encode(
            {**claims, "iat": now - 1000, "exp": now - 100}, key.private_key, **sign
        ),
        "wrong aud": jwt.encode({**claims, "aud": "another-api"}, key.private_key, **sign),
    }


async def test_a_third_party_verifier_accepts_our_access_tokens(client, fresh_mobile):
    user = await add_user(client, mobile := fresh_mobile())
    app = native_app(client)
    answer = await token_login(app, mobile)
    assert answer["errno"] == "0" and answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 900 and len(answer["refresh_token"]) >= 60
    assert not app.cookies.get("session")
    claims = await asyncio.to_thread(third_party_verify, client.base_url, answer["access_token"])
    assert claims["sub"] == str(user.user_id)
    assert claims["exp"] - claims["iat"] <= 900
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "sid"} <= set(claims)
    verified = await app.fetch("/auth/verify", headers=bearer(answer["access_token"]))
    assert verified.code == 200 and verified.headers["X-User-Id"] == str(user.user_id)


async def test_forged_tokens_are_refused_by_us_and_by_the_third_party(client, fresh_mobile):
    await add_user(client, mobile := fresh_mobile())
    good = (await token_login(native_app(client), mobile))["access_token"]
    for what, token in forged_tokens(client.app, good).items():
        app = native_app(client)
        assert (await app.fetch("/auth/verify", headers=bearer(token))).code == 401, what
        answer = await app.json("/api/v1.0/user", headers=bearer(token))
        assert answer["errno"] == "4101", what
        with pytest.raises(jwt.PyJWTError):
            await asyncio.to_thread(third_party_verify, client.base_url, token)
    assert await asyncio.to_thread(third_party_verify, client.base_url, good)


async def test_a_token_issued_with_an_earlier_clock_has_expired_for_both(client, fresh_mobile):
    await add_user(client, mobile := fresh_mobile())
    tokens = client.app.services.tokens
    tokens.clock = lambda: time.time() - 901
    try:
        expired = (await token_login(native_app(client), mobile))["access_token"]
    finally:
        tokens.clock = time.time
    assert (await native_app(client).fetch("/auth/verify", headers=bearer(expired))).code == 401
    with pytest.raises(jwt.ExpiredSignatureError):
        await asyncio.to_thread(third_party_verify, client.base_url, expired)


async def test_bearer_works_on_every_session_route_without_xsrf(client, sandbox, fresh_mobile):
    user = await add_user(client, mobile := fresh_mobile())
    app = native_app(client)
    pair = await token_login(app, mobile)
    auth = bearer(pair["access_token"])
    assert (await app.json("/api/v1.0/session", headers=auth))["data"]["name"] == user.name
    assert (await app.json("/api/v1.0/user", headers=auth))["data"]["mobile"] == mobile
    # POST /api/v1.0/sms_codes with a purpose that needs the session: no XSRF token.
    text = await client.new_captcha("bearer-confirm")
    body = {"image_code": text, "image_code_id": "bearer-confirm", "purpose": "confirm_mobile"}
    sent = await app.json("/api/v1.0/sms_codes", "POST", body, auth)
    assert sent["errno"] == "0", sent
    # PUT /api/v1.0/user/mobile: every family ends, the answer carries a new pair.
    new_mobile = fresh_mobile()
    text = await client.new_captcha("bearer-change")
    body = {"mobile": new_mobile, "image_code": text, "image_code_id": "bearer-change"}
    body["purpose"] = "change_mobile"
    assert (await app.json("/api/v1.0/sms_codes", "POST", body, auth))["errno"] == "0"
    code = last_code(sandbox, new_mobile)
    body = {"mobile": new_mobile, "sms_code": code, "password": PASSWORD}
    moved = await app.json("/api/v1.0/user/mobile", "PUT", body, auth)
    assert moved["errno"] == "0" and moved["data"]["mobile"] == new_mobile
    assert (await app.json("/api/v1.0/user", headers=auth))["errno"] == "4101"
    auth = bearer(moved["data"]["tokens"]["access_token"])
    assert (await app.json("/api/v1.0/user", headers=auth))["data"]["mobile"] == new_mobile
    # DELETE /api/v1.0/session and the news logout revoke the token's family.
    assert (await app.json("/api/v1.0/session", "DELETE", headers=auth))["errno"] == "0"
    assert (await app.json("/api/v1.0/session", headers=auth))["errno"] == "4101"
    news = bearer((await token_login(app, new_mobile))["access_token"])
    assert (await app.json("/passport/logout", headers=news))["errno"] == "0"
    assert (await app.fetch("/auth/verify", headers=news)).code == 401
    assert not app.cookies.get("session")


async def test_the_cookie_without_a_bearer_still_needs_xsrf(client, fresh_mobile):
    await add_user(client, mobile := fresh_mobile())
    assert (await password_login(client, mobile))["errno"] == "0"
    response = await client.fetch("/api/v1.0/session", "DELETE")  # cookie, no XSRF header
    assert response.code == 403
    assert (await client.json("/api/v1.0/session"))["errno"] == "0"
    # A bearer token, even a bad one, does not lend the cookie its exemption: the cookie
    # no longer counts at all.
    answer = await client.json("/api/v1.0/session", "DELETE", headers=bearer("junk"))
    assert answer["errno"] == "0"
    assert (await client.json("/api/v1.0/session"))["errno"] == "0"  # still logged in


async def test_refresh_rotation_and_revocation_over_http(client, fresh_mobile):
    await add_user(client, mobile := fresh_mobile())
    app = native_app(client)
    first = await token_login(app, mobile)
    second = await app.json(
        "/api/v1.0/tokens/refresh", "POST", {"refresh_token": first["refresh_token"]}
    )
    assert second["errno"] == "0" and second["refresh_token"] != first["refresh_token"]
    reused = await app.json(
        "/api/v1.0/tokens/refresh", "POST", {"refresh_token": first["refresh_token"]}
    )
    assert reused["errno"] == "4101"
    assert (await app.fetch("/auth/verify", headers=bearer(second["access_token"]))).code == 401
    third = await token_login(app, mobile)
    revoked = await app.fetch(
        "/api/v1.0/tokens",
        "DELETE",
        {"refresh_token": third["refresh_token"]},
        allow_nonstandard_methods=True,  # a DELETE with a body: the access token had expired
    )
    assert json.loads(revoked.body)["errno"] == "0"
    assert (await app.fetch("/auth/verify", headers=bearer(third["access_token"]))).code == 401
    fourth = await token_login(app, mobile)
    revoked = await app.json("/api/v1.0/tokens", "DELETE", headers=bearer(fourth["access_token"]))
    assert revoked["errno"] == "0"
    refreshed = await app.json(
        "/api/v1.0/tokens/refresh", "POST", {"refresh_token": fourth["refresh_token"]}
    )
    assert refreshed["errno"] == "4101"


async def test_token_login_shares_the_session_logins_throttle(client, fresh_mobile):
    await add_user(client, mobile := fresh_mobile())
    for _ in range(5):
        assert (await password_login(client, mobile, "wrong-password"))["errno"] == "4004"
    refused = await token_login(native_app(client), mobile)
    assert refused["errno"] == "4201" and refused["data"]["reason"] == "login_account_ip"


async def test_token_login_with_an_sms_code(client, sandbox, fresh_mobile):
    user = await add_user(client, mobile := fresh_mobile())
    code = await code_for(client, sandbox, mobile, "login", "token-sms")
    app = native_app(client)
    answer = await app.json("/api/v1.0/tokens", "POST", {"mobile": mobile, "sms_code": code})
    assert answer["errno"] == "0"
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user.user_id)


async def test_reset_and_number_change_revoke_every_family(mode_client, sandbox, fresh_mobile):
    client = mode_client
    await add_user(client, mobile := fresh_mobile())
    logins = [await token_login(native_app(client), mobile) for _ in range(2)]
    code = await code_for(client, sandbox, mobile, "reset_password", "r")
    assert (await reset(client, mobile, code))["errno"] == "0"
    for pair in logins:
        assert (
            await native_app(client).fetch("/auth/verify", headers=bearer(pair["access_token"]))
        ).code == 401
        refreshed = await native_app(client).json(
            "/api/v1.0/tokens/refresh", "POST", {"refresh_token": pair["refresh_token"]}
        )
        assert refreshed["errno"] == "4101"
    logins = [await token_login(native_app(client), mobile, NEW_PASSWORD) for _ in range(2)]
    new_mobile = fresh_mobile()
    code = await code_for(client, sandbox, new_mobile, "change_mobile", "c")
    answer = await change_mobile(client, new_mobile, code, {"password": NEW_PASSWORD})
    assert answer["errno"] == "0", answer
    for pair in logins:
        assert (
            await native_app(client).fetch("/auth/verify", headers=bearer(pair["access_token"]))
        ).code == 401


async def test_cors_preflight_from_an_allowed_and_a_refused_origin(make_app):
    app = await make_app(tokens={"cors_origins": f"{ALLOWED}, http://localhost:3000"})
    async with serving(app) as client:
        ask = {
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        }
        allowed = await client.fetch(
            "/api/v1.0/user", "OPTIONS", headers={"Origin": ALLOWED, **ask}
        )
        assert allowed.code == 204
        assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
        assert allowed.headers["Access-Control-Allow-Methods"] == "GET, DELETE"
        assert "Access-Control-Allow-Credentials" not in allowed.headers
        refused = await client.fetch(
            "/api/v1.0/user", "OPTIONS", headers={"Origin": "https://evil.example", **ask}
        )
        assert refused.code == 403 and "Access-Control-Allow-Origin" not in refused.headers
        answer = await client.fetch("/api/v1.0/session", headers={"Origin": ALLOWED})
        assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_no_origin_is_allowed_by_default(client):
    response = await client.fetch(
        "/api/v1.0/tokens",
        "OPTIONS",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert response.code == 403 and "Access-Control-Allow-Origin" not in response.headers
