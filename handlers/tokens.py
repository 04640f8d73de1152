"""Identity for other clients and services: API tokens, the JWKS and nginx's forward auth."""

from __future__ import annotations

import json
import urllib.parse

from handlers.accounts import checked_login
from handlers.base import ApiHandler, BaseHandler
from services.errors import ServiceError, Success
from services.tokens.service import TokenPair


class TokenApiHandler(ApiHandler):
    """A token route: the credential travels in the body (no cookie), so no XSRF token; a
    success answers the OAuth 2.0 token fields at the top level, beside errno and errmsg."""

    def check_xsrf_cookie(self) -> None:
        return None  # nothing ambient is used: no cookie is read, none is set

    def reply_tokens(self, pair: TokenPair) -> None:
        self.reply("OK", pair.as_dict())

    def envelope(self, outcome: Success | ServiceError) -> dict[str, object]:
        body = super().envelope(outcome)
        data = body.pop("data", None) if isinstance(outcome, Success) else None
        if isinstance(data, dict):
            body.update(data)
        return body


class IhomeTokensApiHandler(TokenApiHandler):
    """POST /api/v1.0/tokens {mobile, password or sms_code[, image_code, image_code_id]}: a
    token pair for an API client; DELETE (bearer, or {refresh_token}): revoke that login."""

    route_name = "tokens"

    async def post(self) -> None:
        """The session login's checks (throttle, CAPTCHA), then a new refresh family."""
        user = await checked_login(self, self.json_body())
        await self.accounts.admit(user)
        self.reply_tokens(await self.tokens.issue(user))

    async def delete(self) -> None:
        """Revoke a login: the bearer token's family, or the body's refresh token's (for when
        the access token has expired); an unknown token is not an error (RFC 7009)."""
        if self.bearer_token() is not None:
            await self.log_out()
        else:
            await self.tokens.revoke(self.json_body().get("refresh_token"))
        self.reply("OK")


class IhomeTokenRefreshApiHandler(TokenApiHandler):
    """POST /api/v1.0/tokens/refresh {refresh_token}: a new pair; the token is used up."""

    route_name = "tokens_refresh"

    async def post(self) -> None:
        self.reply_tokens(await self.tokens.refresh(self.json_body().get("refresh_token")))


class JwksHandler(BaseHandler):
    """GET /.well-known/jwks.json: the public keys that verify our access tokens."""

    route_name = "jwks"

    async def prepare(self) -> None:
        self.application.requests_started()
        self._counted = True  # no XSRF cookie: verifiers are services, not browsers

    def get(self) -> None:
        self.set_header("Content-Type", "application/jwk-set+json")
        # Verifiers cache the set; a next key is published well before it signs (tools.keys).
        self.set_header("Cache-Control", "public, max-age=300")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.succeed(json.dumps(self.tokens.jwks()))


class ForwardAuthHandler(BaseHandler):
    """GET /auth/verify, for nginx's auth_request: 200 with X-User-Id and X-User-Name (the
    name percent-encoded) for a live session cookie or access token, else 401. Redis only."""

    route_name = "auth_verify"
    quiet_access_line = True  # DEBUG: nginx logs the request this check guards

    async def prepare(self) -> None:
        self.application.requests_started()
        self._counted = True  # no XSRF cookie: nginx's subrequest answer goes to no browser

    def check_xsrf_cookie(self) -> None:
        return None  # GET and HEAD only; never checked, said for the reader

    def compute_etag(self) -> None:
        return None  # an empty answer, never cached: no ETag to compute and compare

    async def get(self) -> None:
        session = await self.signed_in()
        self.set_header("Cache-Control", "no-store")
        if session is None:
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Bearer realm="smsreg"')
            self.finish()
            return
        self.set_header("X-User-Id", str(session["user_id"]))
        self.set_header("X-User-Name", urllib.parse.quote(session["name"], safe=""))
        self.succeed()  # 200 with an empty body (Content-Length: 0): any 2xx passes nginx

    head = get


ROUTES = [
    (r"/api/v1\.0/tokens", IhomeTokensApiHandler),
    (r"/api/v1\.0/tokens/refresh", IhomeTokenRefreshApiHandler),
]
# Served whatever families are enabled: verifiers and nginx do not speak a family.
IDENTITY_ROUTES = [
    (r"/\.well-known/jwks\.json", JwksHandler),
    (r"/auth/verify", ForwardAuthHandler),
]
