"""The Mail page in headless Chromium (Debian ``chromium`` driven by Playwright): sign in,
open a conversation, see its linked deal, link another deal — and a message carrying a
remote image and scripts renders without loading the image (a loopback server counts
requests) or running the scripts (they would change the title), until the reader asks
for the images."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import needs_chromium
from tests.support.server import BccdServer
from tests.support.wait import wait_until
from tests.support.web_hooks import PixelServer
from tests.support.web_world import World, build

pytestmark = [
    pytest.mark.xdist_group("web_browser"),  # one world and one browser per module
    needs_chromium,
    pytest.mark.spec("9"),
]


@pytest.fixture(scope="module")
def pixel() -> Iterator[PixelServer]:
    with PixelServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pixel: PixelServer) -> Iterator[World]:
    srv = BccdServer(tmp_path_factory.mktemp("browser"))
    srv.start()
    try:
        yield build(srv, remote_image=f"{pixel.url}/pixel.gif?u=dana")
    finally:
        srv.stop()



def test_sign_in_open_link_and_remote_content_blocked(site: World, pixel: PixelServer,
                                                       browser, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    try:
        page.goto(f"{site.srv.http_url}/mail")
        assert page.url.endswith("/mail/login")
        page.click("summary")  # the token form sits below the emailed-link form
        page.fill("#token", site.tokens["alice"])
        page.click("details button[type=submit]")
        page.wait_for_url("**/mail")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["bccd_session"]["httpOnly"] and cookies["bccd_session"]["sameSite"] == "Lax"
        assert page.locator("a.subject", has_text="Private offer").is_visible()

        page.click("a.subject:has-text('Private offer')")
        page.wait_for_url(f"**/mail/threads/{site.threads['private']}")
        title = page.title()
        assert title == "Private offer · Smart Bcc"
        links = page.locator("#links")
        assert links.locator(".badge.deal", has_text="Big deal").is_visible()
        assert links.locator(".badge.person", has_text="Dana Client").is_visible()

        # the message body: sanitized, sandboxed, no remote image, no script
        frame = page.frame_locator("iframe")
        assert frame.locator("text=Hello").first.is_visible()
        assert frame.locator("a", has_text="offer").get_attribute("href") == "https://example.com/offer"
        inner = next(f for f in page.frames if f != page.main_frame)
        time.sleep(0.5)
        assert inner.evaluate("document.title") != "pwned"
        assert inner.evaluate("document.images.length") == 2
        assert inner.evaluate("[...document.images].every(i => !i.getAttribute('src'))")
        assert page.title() == title
        assert pixel.paths == []
        assert page.locator(".remote").is_visible()

        # attachments download
        with page.expect_download() as dl:
            page.click("text=offer.pdf")
        assert Path(dl.value.path()).read_bytes() == b"%PDF-1.4 offer"

        # link another deal: it replaces Big deal (a thread has one deal)
        page.select_option("select[name=ref]", label="Second deal")
        page.click("form:has(select[name=ref]) button")
        page.wait_for_url("**?done=linked")
        assert page.locator(".notice", has_text="Linked.").is_visible()
        assert links.locator(".badge.deal", has_text="Second deal").is_visible()
        assert links.locator(".badge.deal", has_text="Big deal").count() == 0
        assert pixel.paths == [] and page.title() == title

        # the reader asks for the images: now (and only now) the remote image loads
        page.click(".remote a")
        page.wait_for_url("**images=1**")
        wait_until(lambda: pixel.paths, timeout=10)
        assert pixel.paths == ["/pixel.gif?u=dana"]
        inner = next(f for f in page.frames if f != page.main_frame)
        assert inner.evaluate("document.title") != "pwned" and page.title() == title
        assert not [c for c in console if "pwned" in c]
    finally:
        context.close()
    with site.client("alice") as alice:
        t = alice.get(f"/threads/{site.threads['private']}").json()
        assert ("deal", site.ids["second"], "manual") in {(lk["kind"], lk["id"], lk["how"])
                                                          for lk in t["links"]}


def test_the_page_fits_a_phone(site: World, browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(f"{site.srv.http_url}/mail/login")
        page.click("summary")  # the token form sits below the emailed-link form
        page.fill("#token", site.tokens["bob"])
        page.click("details button[type=submit]")
        page.wait_for_url("**/mail")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.click("a.subject:has-text('Shared plan')")
        page.wait_for_load_state()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert "Shared plan" in page.title()
    finally:
        context.close()
