"""Two server.py instances sharing Redis, MariaDB and the sandbox, and nginx in front of them."""

from __future__ import annotations

import pytest

from tests.nginx.helpers import Nginx, address, live_servers


@pytest.fixture
def instances(config, clean_state, tmp_path):
    """Two instances, A and B."""
    with live_servers(config, tmp_path, "ab") as servers:
        yield servers


@pytest.fixture
def nginx(instances, tmp_path):
    proxy = Nginx(tmp_path / "nginx", [address(server) for server in instances])
    proxy.start()
    yield proxy
    proxy.stop()
