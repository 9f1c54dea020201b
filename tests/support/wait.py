"""Waiting for something another process or thread does — a server's log line, a database
row, a delivered webhook — by polling with a deadline: the one way the tests wait.

``wait_until(fn)`` calls ``fn`` until it returns something truthy and returns that value;
past ``timeout`` seconds it fails the test with an ``AssertionError`` naming ``what`` was
awaited, the last value, and ``detail()`` when given (a server's log, say).
``wait_until_async`` is the same for a test running on an event loop: it sleeps with
``asyncio.sleep`` so the loop keeps running.

A deadline is generous (the suite runs on loaded machines); a condition that is met
returns at once, so a generous deadline costs nothing when all is well.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: object, detail: Callable[[], object] | None) -> AssertionError:
    text = f"{what} not met within {timeout}s (last: {last!r})"
    if detail is not None:
        text += f"\n{detail()}"
    return AssertionError(text)


def wait_until(fn: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.1,
               what: str = "condition", detail: Callable[[], object] | None = None) -> T:
    """Poll ``fn`` until it returns something truthy and return it; AssertionError on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last, detail)
        time.sleep(interval)


async def wait_until_async(fn: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.05,
                           what: str = "condition",
                           detail: Callable[[], object] | None = None) -> T:
    """:func:`wait_until` for a coroutine: the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last, detail)
        await asyncio.sleep(interval)
