"""Tracking as people see it (SPEC §13), in headless Chromium (Debian ``chromium`` driven
by Playwright, with a person's browser user agent): the recipient opens the received
HTML — the pixel loads, the hidden link can be neither seen nor reached by keyboard, a
click goes through bccd to the page it names and no cookie is set —; the sender's Mail
page shows "opened 2× (1 by machine)", the clicks per link and why each machine hit was
one, without ever loading the pixel itself; the settings and the compose form carry the
tracking choices. Screenshots are saved under each test's tmp dir."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.compose.test_browser import Session, expect
from tests.support import tracking_kit as tk
from tests.support.browser import needs_chromium
from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

pytestmark = [
    pytest.mark.slow, pytest.mark.spec("13"), pytest.mark.xdist_group("tracking_browser"),
    needs_chromium,
]


class Landing:
    """The site a message links to: records each visit's path and headers."""

    def __init__(self) -> None:
        self.visits: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.visits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b"<!doctype html><title>Landing</title><h1>Our offer</h1>"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()



@pytest.fixture
def landing() -> Iterator[Landing]:
    site = Landing()
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = tmp_path / "screenshots"
    out.mkdir()
    return out


def test_a_person_reading_in_a_browser_is_counted_and_the_sender_sees_it_on_the_mail_page(
        browser: Any, world: ComposeWorld, alice: Mailuser, landing: Landing, shots: Path) -> None:
    tk.enable(world, alice)
    html = (f'<p>Hello Dana,</p><p>Here is <a href="{landing.url}/offer?id=7">the offer</a> and '
            f'<a href="{landing.url}/terms">our terms</a>.</p><p>Best, Alice</p>')
    sent, sent_at = tk.send(world, alice, html=html, subject="Offer for a person")
    got = tk.received(world, sent["message_id"])
    before = len(tk.hit_rows(world))
    # the mail is prefetched by Gmail's proxy, as Gmail does
    assert tk.fetch(world, got.pixel_path, tk.GMAIL_PROXY).status_code == 200

    # the recipient's mail program shows the HTML, images on
    reader = browser.new_context(user_agent=tk.BROWSER, viewport={"width": 900, "height": 600})
    page = reader.new_page()
    try:
        with page.expect_response(lambda r: "/t/o/" in r.url) as pixel:
            page.set_content(got.html)
        assert pixel.value.status == 200 and pixel.value.headers["cache-control"].startswith("no-store")
        page.screenshot(path=str(shots / "received.png"), full_page=True)
        decoy = page.locator('a[aria-hidden="true"]')
        expect(decoy).to_have_count(1)
        assert not decoy.is_visible() and decoy.bounding_box() is None
        # the keyboard never reaches it: Tab goes through the visible links only
        focused = []
        for _ in range(3):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.textContent"))
        assert focused[:2] == ["the offer", "our terms"]
        tk.after_sending(sent_at, 10.5)
        with page.expect_navigation():
            page.click("text=the offer")
        assert page.url == f"{landing.url}/offer?id=7"
        assert page.locator("h1").inner_text() == "Our offer"
        [(path, headers)] = [v for v in landing.visits if v[0] != "/favicon.ico"]
        assert path == "/offer?id=7"
        assert "referer" not in headers  # the token does not leak to the site
        assert reader.cookies() == []  # bccd set no cookie
    finally:
        reader.close()
    rows = tk.hit_rows(world)[before:]
    assert [(link, kind, reason) for _, link, kind, reason in rows] == [
        (None, "machine", "gmail-proxy"), (None, "human", "person"), (0, "human", "person")]

    # the sender's Mail page
    s = Session(browser, world, alice, shots)
    try:
        seen = len(tk.hit_rows(world))
        s.page.goto(f"{world.srv.http_url}/mail/threads/{sent['thread_id']}?images=1")
        box = s.page.locator("[data-tracking]")
        expect(box.locator("[data-opens]")).to_contain_text("Opened 2× (1 by machine)")
        expect(box.locator("[data-opens]")).to_contain_text("first by a person")
        clicks = box.locator("[data-clicks] li")
        expect(clicks).to_have_count(2)
        expect(clicks.nth(0)).to_contain_text(f"{landing.url}/offer?id=7 — clicked 1×")
        expect(clicks.nth(1)).to_contain_text("not clicked")
        s.shot("mail-page-tracking")
        box.locator("summary").click()
        expect(box.locator(".hits li")).to_have_count(3)
        expect(box.locator(".hit-machine")).to_contain_text("Gmail's image proxy")
        s.shot("mail-page-tracking-why")
        # showing the message (remote images allowed) loads no pixel: the filed copy has none
        frame = s.page.frame_locator("iframe")
        expect(frame.locator("a", has_text="the offer")).to_have_attribute(
            "href", f"{landing.url}/offer?id=7")
        time.sleep(1)
        assert len(tk.hit_rows(world)) == seen
        assert s.errors == []
    finally:
        s.close()


def test_settings_and_the_compose_form_carry_the_tracking_choices(
        browser: Any, world: ComposeWorld, alice: Mailuser, shots: Path) -> None:
    s = Session(browser, world, alice, shots)
    page = s.page
    try:
        page.goto(f"{world.srv.http_url}/mail/settings")
        box = page.locator("#tracking-settings")
        expect(box).to_contain_text("Track opens")
        assert not box.locator("input[name=tracking_opens]").is_checked()
        box.locator("input[name=tracking_opens]").check()
        s.shot("settings-tracking")
        page.click("#tracking-settings ~ button[type=submit], form[action='/mail/settings'] button[type=submit]")
        page.wait_for_url("**/mail/settings?done=saved")
        with world.api(alice.token) as api:
            got = api.get("/me/settings").json()
        assert (got["tracking_opens"], got["tracking_clicks"]) == (True, False)
        # the compose form starts from the settings, and decides for its message
        page.goto(f"{world.srv.http_url}/mail/compose?to=dana@client.test")
        page.wait_for_selector(".editor")
        choice = page.locator("#tracking-choice")
        assert choice.locator("input[name=track_opens]").is_checked()
        assert not choice.locator("input[name=track_clicks]").is_checked()
        choice.locator("input[name=track_clicks]").check()
        page.fill("#subject", "Tracked from the form")
        page.locator(".editor").click()
        page.keyboard.type("Read ")
        page.keyboard.type("it")
        for _ in range(2):
            page.keyboard.press("Shift+ArrowLeft")
        page.once("dialog", lambda d: d.accept("https://example.com/from-the-form"))
        page.click("button[data-action=link]")
        s.shot("compose-tracking")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**/mail/threads/**done=sent**")
        expect(page.locator("[data-tracking] [data-opens]")).to_contain_text("Not opened yet")
        expect(page.locator("[data-tracking] [data-clicks] li")).to_contain_text("not clicked")
        s.shot("sent-tracking")
        assert s.errors == []
    finally:
        s.close()
    [raw] = wait_for(lambda: [m.data for m in list(world.capture.messages)
                              if b"Tracked from the form" in m.data[:4000]])
    assert b"/t/o/" in raw and b"/t/c/" in raw and b"from-the-form" not in raw.split(b"text/html")[1][:200]


def test_where_the_company_does_not_allow_it_the_choices_are_not_offered(
        browser: Any, world: ComposeWorld, shots: Path) -> None:
    user = world.user("notallowed")
    world.srv.cli("company", "set", "acme", "--tracking", "off")
    s = Session(browser, world, user, shots)
    try:
        s.page.goto(f"{world.srv.http_url}/mail/settings")
        expect(s.page.locator("#tracking-settings")).to_contain_text(
            "Your company does not allow open and click tracking.")
        expect(s.page.locator("input[name=tracking_opens]")).to_have_count(0)
        s.shot("settings-not-allowed")
        s.page.goto(f"{world.srv.http_url}/mail/compose")
        expect(s.page.locator("#tracking-choice")).to_have_count(0)
    finally:
        s.close()
        world.srv.cli("company", "set", "acme", "--tracking", "allowed")
