"""Shared helpers for the alternate-address tests: links in captured mail."""

from __future__ import annotations

import re

from tests.support.capture_smtp import Captured

LINK_RE = re.compile(r"(https?://[^\s\"<>]+/confirm/[a-z2-7]+)")


def confirm_link(mail: Captured) -> str:
    links = set(LINK_RE.findall(mail.part("text/plain")))
    assert len(links) == 1, links
    html_links = set(LINK_RE.findall(mail.part("text/html")))
    assert html_links == links, (html_links, links)
    return links.pop()


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]
