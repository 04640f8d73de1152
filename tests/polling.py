"""Waiting for a value that settles later: poll it with a deadline, never sleep a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_PATIENCE = 20.0  # generous: a busy 2-core machine may be slow, a fast one returns at once
INTERVAL = 0.02


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    what: str,
    patience: float = DEFAULT_PATIENCE,
) -> T:
    """Call probe until done(value) holds; return that value, or fail naming what never happened."""
    deadline = time.monotonic() + patience
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {patience} s (last value {value!r})")
        time.sleep(INTERVAL)


async def async_wait_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    what: str,
    patience: float = DEFAULT_PATIENCE,
) -> T:
    """wait_until for a coroutine probe, yielding to the event loop between tries."""
    deadline = time.monotonic() + patience
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {patience} s (last value {value!r})")
        await asyncio.sleep(INTERVAL)
