"""The URL table: each API family's handler module contributes its ROUTES."""

from handlers import accounts, callbacks, codes, console, meiduo, news, ops, pages, tokens
from handlers.application import Route, SmsRegApplication
from handlers.base import JsonNotFoundHandler
from services.composition import Services
from services.config import FamiliesConfig
from services.errors import ServiceError, Success


def all_routes(families: FamiliesConfig) -> list[Route]:
    routes: list[Route] = [*ops.ROUTES, *console.ROUTES, *callbacks.ROUTES, *tokens.IDENTITY_ROUTES]
    if families.ihome:
        routes += [*codes.ROUTES, *accounts.ROUTES, *tokens.ROUTES, *pages.ROUTES]
    if families.meiduo:
        routes += meiduo.ROUTES
    if families.news:
        routes += news.ROUTES
    return routes


def build_application(services: Services) -> SmsRegApplication:
    """The application serving the enabled families; unknown URLs get a JSON 404."""
    return SmsRegApplication(services, all_routes(services.config.families), NotFoundHandler)


class NotFoundHandler(JsonNotFoundHandler):
    """An unknown URL: the JSON 404 in the shape of the family whose paths it starts like."""

    def envelope(self, outcome: Success | ServiceError) -> dict[str, object]:
        if self.config.families.meiduo and meiduo.MEIDUO_PATH_RE.fullmatch(self.request.path):
            return meiduo.meiduo_envelope(outcome)
        return super().envelope(outcome)
