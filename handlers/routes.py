"""The URL table: each handler module contributes its ROUTES."""

from handlers import verify


def all_routes() -> list[tuple]:
    return [*verify.ROUTES]
