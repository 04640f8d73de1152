"""The URL table: each handler module contributes its ROUTES."""

from handlers import accounts, verify


def all_routes() -> list[tuple]:
    return [*verify.ROUTES, *accounts.ROUTES]
