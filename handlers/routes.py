"""The URL table: each API family's handler module contributes its ROUTES."""

from handlers import accounts, callbacks, codes, meiduo, news, ops, pages
from services.config import FamiliesConfig


def all_routes(families: FamiliesConfig) -> list[tuple]:
    routes: list[tuple] = [*ops.ROUTES, *callbacks.ROUTES]
    if families.ihome:
        routes += [*codes.ROUTES, *accounts.ROUTES, *pages.ROUTES]
    if families.meiduo:
        routes += meiduo.ROUTES
    if families.news:
        routes += news.ROUTES
    return routes
