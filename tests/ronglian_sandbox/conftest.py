"""Two Ronglian sandboxes for these tests: the default one, and one with whitelisted test
numbers, no 30 s interval, a second account and extra templates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ronglian_sandbox.helpers import CUSTOM_CONFIG
from tests.sandbox_helpers import SandboxProcess


@pytest.fixture(scope="package")
def sandbox_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with SandboxProcess(tmpdir=str(tmp_path_factory.mktemp("ronglian"))) as proc:
        yield proc


@pytest.fixture(scope="package")
def custom_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """Whitelisted test numbers, no 30 s interval, a second account and extra templates."""
    tmpdir = str(tmp_path_factory.mktemp("ronglian-custom"))
    with SandboxProcess(config=CUSTOM_CONFIG, tmpdir=tmpdir) as proc:
        yield proc


@pytest.fixture
def sb(sandbox_proc: SandboxProcess) -> SandboxProcess:
    """The default-config sandbox with an empty inbox, fresh rate limits and no faults."""
    sandbox_proc.clear()
    sandbox_proc.reset_faults()
    return sandbox_proc


@pytest.fixture
def custom(custom_proc: SandboxProcess) -> SandboxProcess:
    custom_proc.clear()
    custom_proc.reset_faults()
    return custom_proc
