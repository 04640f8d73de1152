"""The URL table: each API family's handler module contributes its ROUTES."""

from handlers import accounts, callbacks, codes, meiduo, news, ops, pages
from handlers.application import Route, SmsRegApplication
from handlers.base import JsonNotFoundHandler
from services.composition import Services
from services.config import FamiliesConfig


def all_routes(families: FamiliesConfig) -> list[Route]:
    routes: list[Route] = [*ops.ROUTES, *callbacks.ROUTES]
    if families.ihome:
        routes += [*codes.ROUTES, *accounts.ROUTES, *pages.ROUTES]
    if families.meiduo:
        routes += meiduo.ROUTES
    if families.news:
        routes += news.ROUTES
    return routes


def build_application(services: Services) -> SmsRegApplication:
    """The application serving the enabled families; unknown URLs get a JSON 404."""
    return SmsRegApplication(services, all_routes(services.config.families), JsonNotFoundHandler)
