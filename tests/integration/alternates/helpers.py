"""Shared helpers for the alternate-address tests: links in captured mail, polling."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support.capture_smtp import Captured

T = TypeVar("T")

LINK_RE = re.compile(r"(https?://[^\s\"<>]+/confirm/[a-z2-7]+)")


def confirm_link(mail: Captured) -> str:
    links = set(LINK_RE.findall(mail.part("text/plain")))
    assert len(links) == 1, links
    html_links = set(LINK_RE.findall(mail.part("text/html")))
    assert html_links == links, (html_links, links)
    return links.pop()


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def wait_until(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
