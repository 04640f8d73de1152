"""The services as server.py composes them, on this session's Redis, MariaDB and sandbox,
with no HTTP server: one fixture, so a change to how services are built is one edit here."""

from __future__ import annotations

import contextlib

import pytest

from server import open_services
from services.composition import Services


@pytest.fixture
def make_services(io_loop, config, clean_state):
    """Build the services (server.open_services) on this test's loop, with config changes."""
    stack = contextlib.AsyncExitStack()

    async def build(**changes: object) -> Services:
        return await stack.enter_async_context(open_services(config.replace(**changes)))

    yield build
    io_loop.run_sync(stack.aclose)


@pytest.fixture
def services(io_loop, make_services) -> Services:
    """The services with the session's config."""
    return io_loop.run_sync(make_services)
