"""Waiting for a value that settles later: poll it with a deadline, never sleep a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_PATIENCE = 20.0  # generous: a busy 2-core machine may be slow, a fast one returns at once
INTERVAL = 0.02


class _Deadline:
    """The end of one wait, and the failure that names what never happened by then."""

    def __init__(self, what: str, patience: float) -> None:
        self.what, self.patience = what, patience
        self.at = time.monotonic() + patience

    def check(self, value: object) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(f"{self.what}: not after {self.patience} s (last value {value!r})")


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    what: str,
    patience: float = DEFAULT_PATIENCE,
) -> T:
    """Call probe until done(value) holds; return that value, or fail naming what never happened."""
    deadline = _Deadline(what, patience)
    while not done(value := probe()):
        deadline.check(value)
        time.sleep(INTERVAL)
    return value


async def async_wait_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    what: str,
    patience: float = DEFAULT_PATIENCE,
) -> T:
    """wait_until for a coroutine probe, yielding to the event loop between tries."""
    deadline = _Deadline(what, patience)
    while not done(value := await probe()):
        deadline.check(value)
        await asyncio.sleep(INTERVAL)
    return value
