"""The operator console: /ops (charts, fraud segments, breakers, budget), the unblock of a
fraud segment and the lookup of a number's sends.

Only for a client in ops.allow *and* a logged-in operator (ops.operators); anyone else gets
the JSON 404 of an unknown URL, so the console's existence is not revealed. Forms are POSTs
with the XSRF token (Tornado checks it); the service (services/ops/console.py) audits each
view and action.
"""

from __future__ import annotations

import re
import urllib.parse

import tornado.web

from handlers.application import Route
from handlers.base import ApiHandler
from handlers.from_services import FromServices
from handlers.pages import CONTENT_SECURITY_POLICY
from services.errors import ServiceError
from services.ops.console import SEGMENT_RE, Operator

UNBLOCKED_RE = re.compile(SEGMENT_RE.pattern)


class ConsoleHandler(ApiHandler):
    """A console route: each method first establishes the operator (require_operator)."""

    route_name = "ops"
    console = FromServices(lambda services: services.console)
    operator: Operator

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    async def require_operator(self) -> None:
        """Establish the operator, or answer the 404 of an unknown URL. First in each method."""
        address = self.client_address
        operator = None
        if self.console.allows(address):
            session = await self.sessions.get(self.session_id())
            operator = self.console.operator(session, address)
        if operator is None:
            raise tornado.web.HTTPError(404)  # as an unknown URL: nothing revealed
        self.operator = operator

    async def show(
        self,
        notice: str = "",
        lookup: tuple[str, list[dict[str, str]]] | None = None,
        status: int = 200,
    ) -> None:
        overview = await self.console.overview(self.operator, self.client_address)
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.errno = "0"
        self.render("ops.html", overview=overview, notice=notice, lookup=lookup)


class ConsolePageHandler(ConsoleHandler):
    """GET /ops."""

    async def get(self) -> None:
        await self.require_operator()
        unblocked = self.get_query_argument("unblocked", "")
        notice = f"已将 {unblocked} 恢复为正常" if UNBLOCKED_RE.match(unblocked) else ""
        await self.show(notice)


class ConsoleUnblockHandler(ConsoleHandler):
    """POST /ops/segments (form: segment): the segment back to normal, then GET /ops."""

    route_name = "ops_unblock"

    async def post(self) -> None:
        await self.require_operator()
        segment = self.get_body_argument("segment", "")
        try:
            await self.console.unblock(self.operator, segment, self.client_address)
        except ServiceError as refused:
            await self.show(refused.errmsg, status=400)
            return
        self.errno = "0"
        self.redirect("/ops?" + urllib.parse.urlencode({"unblocked": segment}), status=303)


class ConsoleLookupHandler(ConsoleHandler):
    """POST /ops/sends (form: mobile): the number's recent sends, on the console page (a POST:
    the number stays out of URLs, histories and access logs)."""

    route_name = "ops_lookup"

    async def post(self) -> None:
        await self.require_operator()
        mobile = self.get_body_argument("mobile", "")
        try:
            found = await self.console.lookup(self.operator, mobile, self.client_address)
        except ServiceError as refused:
            await self.show(refused.errmsg, status=400)
            return
        await self.show(lookup=found)


ROUTES: list[Route] = [
    (r"/ops", ConsolePageHandler),
    (r"/ops/segments", ConsoleUnblockHandler),
    (r"/ops/sends", ConsoleLookupHandler),
]
