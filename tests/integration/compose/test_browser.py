"""The Mail page's compose (SPEC §12) in headless Chromium (Debian ``chromium`` driven by
Playwright): a new message with formatting, a link, an inline image and an attachment,
persons suggested as one types; a template picked from a deal; a reply and a forward from
a thread; "sent" and "queued, will retry"; errors next to their field; the attachment
limit enforced before upload; email links; and the form without JavaScript. The message
received is checked byte-wise (headers, parts, cid references, threading headers).
Screenshots are saved under the test's tmp dir."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import needs_chromium
from tests.support.compose_world import ComposeWorld, Mailuser, wait_for
from tests.support.mail import make_message


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG (zlib, no imaging library)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png(160, 48, (31, 111, 235))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("compose_browser"),
    needs_chromium,
]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)



class Session:
    """A signed-in browser page that records console errors (a CSP violation among them)."""

    def __init__(self, browser: Any, world: ComposeWorld, user: Mailuser, shots: Path, *,
                 js: bool = True) -> None:
        self.world = world
        self.shots = shots
        self.context = browser.new_context(java_script_enabled=js, viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{world.srv.http_url}/mail/login")
        self.page.click("summary")  # the token form sits below the emailed-link form
        self.page.fill("#token", user.token)
        self.page.click("details.token-login button[type=submit]")
        self.page.wait_for_url("**/mail")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = tmp_path / "screenshots"
    out.mkdir()
    return out


def _sync(world: ComposeWorld, user: Mailuser) -> None:
    """``imap sync --once`` as its own process (Playwright runs an event loop here)."""
    r = world.srv.cli_proc("imap", "sync", "--account", str(user.mailbox_id), "--once")
    assert r.returncode == 0, r.stderr


def _received(world: ComposeWorld, subject: str) -> email.message.EmailMessage:
    needle = subject.encode()
    [raw] = wait_for(lambda: [m.data for m in list(world.capture.messages) if needle in m.data[:4000]])
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_compose_with_formatting_a_link_an_inline_image_and_an_attachment(
        browser: Any, world: ComposeWorld, alice: Mailuser, shots: Path, tmp_path: Path) -> None:
    s = Session(browser, world, alice, shots)
    page = s.page
    try:
        with page.expect_response("**/mail/compose") as got:
            page.click("#compose-link")
        page.wait_for_url("**/mail/compose")
        page.wait_for_selector(".editor")
        csp = got.value.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert all(tag.startswith("<script src=\"/mail/static/")
                   for tag in re.findall(r"<script[^>]*>", page.content()))
        assert page.locator(".editor").is_visible() and not page.locator("textarea#body").is_visible()
        s.shot("compose-empty")
        # persons suggested as one types
        page.click("#to")
        page.keyboard.type("dan")
        page.wait_for_selector("#to-suggestions li")
        assert page.locator("#to-suggestions li").first.inner_text() == "Dana Client <dana@client.test>"
        page.keyboard.press("Enter")
        assert page.input_value("#to") == "Dana Client <dana@client.test>, "
        page.fill("#subject", "Browser offer")
        editor = page.locator(".editor")
        editor.click()
        page.keyboard.type("Hello ")
        page.click("button[data-action=bold]")
        page.keyboard.type("Dana")
        page.click("button[data-action=bold]")
        page.keyboard.type(", see the ")
        page.click("button[data-action=italic]")
        page.keyboard.type("offer")
        page.click("button[data-action=italic]")
        page.keyboard.press("Enter")
        page.click("button[data-action=ul]")
        page.keyboard.type("first point")
        page.keyboard.press("Enter")
        page.keyboard.type("second point")
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        page.keyboard.type("Read it here")
        for _ in range(4):
            page.keyboard.press("Shift+ArrowLeft")
        page.once("dialog", lambda d: d.accept("https://example.com/offer"))
        page.click("button[data-action=link]")
        page.keyboard.press("End")
        page.keyboard.press("Enter")
        png = tmp_path / "logo.png"
        png.write_bytes(PNG)
        page.set_input_files("input[data-role=image-file]", str(png))
        page.wait_for_selector(".editor img")
        # an image pasted from the clipboard goes in too (the same picture: one part)
        page.locator(".editor").press("End")
        page.evaluate("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "pasted.png", {type: "image/png"}));
            document.querySelector(".editor").dispatchEvent(
                new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
        }""", base64.b64encode(PNG).decode())
        expect(page.locator(".editor img")).to_have_count(2)
        # the size limit is enforced before anything is uploaded
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * (world.srv.sections["smtp"]["max_message_size"]))
        page.set_input_files("#attachments", str(big))
        assert page.inner_text("#attachments-error") == (
            "The attachments come to 3.0 MB; the limit is 2.2 MB. Remove some before sending.")
        assert page.locator("form#compose button[type=submit]:not([name])").is_disabled()
        s.shot("compose-attachment-too-big")
        pdf = tmp_path / "offer.pdf"
        pdf.write_bytes(b"%PDF-1.4 browser offer")
        page.set_input_files("#attachments", str(pdf))
        assert page.inner_text("#attachment-list") == "offer.pdf — 22 B"
        assert page.inner_text("#attachments-error") == ""
        s.shot("compose-filled")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**/mail/threads/**done=sent**")
        assert page.locator(".notice", has_text="Sent.").is_visible()
        assert page.locator(".send.send-sent").is_visible()
        s.shot("sent")
        assert s.errors == []
    finally:
        s.close()
    msg = _received(world, "Browser offer")
    assert msg["To"] == "Dana Client <dana@client.test>" and msg["From"] == f"Alice <{alice.email}>"
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related", "text/html",
        "image/png", "application/pdf"]
    html = msg.get_body(("html",)).get_content()
    [img] = [p for p in msg.walk() if p.get_content_type() == "image/png"]  # two uses, one part
    assert html.count(f'cid:{img["Content-ID"].strip("<>")}') == 2 and img.get_content() == PNG
    assert "<b>Dana</b>" in html and "<i>offer</i>" in html
    assert "<ul>" in html and "<li>" in html and "first point" in html and "second point" in html
    assert '<a href="https://example.com/offer">here</a>' in html
    text = msg.get_body(("plain",)).get_content()
    assert "Hello Dana, see the offer" in text and "* first point" in text
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "offer.pdf" and att.get_content() == b"%PDF-1.4 browser offer"


def test_a_template_picked_from_a_deal_fills_subject_and_body(
        browser: Any, world: ComposeWorld, alice: Mailuser, shots: Path) -> None:
    with world.api(alice.token) as api:
        api.post("/me/templates", json={
            "name": "Deal follow-up", "subject": "{{deal.title}} for {{organization.name}}",
            "html": '<p>Hi {{person.first_name | default("there")}},</p><p>about <b>{{deal.title}}</b> '
                    '({{deal.value}})</p>'}).raise_for_status()
    s = Session(browser, world, alice, shots)
    page = s.page
    try:
        page.goto(f"{world.srv.http_url}/mail/compose?deal={world.ids['deal']}&to=dana%40client.test")
        assert page.locator(".badge.deal", has_text="Big deal").is_visible()
        page.select_option("#template_id", label="Deal follow-up")
        expect(page.locator("#subject")).to_have_value("Big deal for Client Co")
        page.wait_for_selector(".editor b")
        assert page.inner_text(".editor").startswith("Hi Dana,")
        s.shot("compose-template")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**done=sent**")
        s.shot("template-sent")
        assert s.errors == []
    finally:
        s.close()
    msg = _received(world, "Big deal for Client Co")
    assert "Hi Dana," in msg.get_body(("html",)).get_content()
    assert "<b>Big deal</b> (12,000 EUR)" in msg.get_body(("html",)).get_content()


def test_reply_and_forward_from_a_thread_and_queued_is_visible(
        browser: Any, world: ComposeWorld, alice: Mailuser, shots: Path) -> None:
    raw = make_message(frm="Dana Client <dana@client.test>", to=alice.email, cc="finn@other-client.test",
                       subject="Browser question", message_id="<bq@client.test>",
                       references="<bq-root@client.test>", in_reply_to="<bq-root@client.test>",
                       body="Could you send the figures?\n")
    world.dovecot.append(alice.email, raw, "INBOX")
    _sync(world, alice)
    s = Session(browser, world, alice, shots)
    page = s.page
    try:
        page.click("a.subject:has-text('Browser question')")
        page.wait_for_url("**/mail/threads/**")
        thread_url = page.url
        # every address is a link to write to it
        assert page.locator("a.addr", has_text="Dana Client").get_attribute("href") == \
            "/mail/compose?to=dana%40client.test"
        page.click("a:has-text('Reply all')")
        page.wait_for_url("**reply_to=**all=1")
        assert page.input_value("#to") == "Dana Client <dana@client.test>"
        assert page.input_value("#cc") == "finn@other-client.test"
        assert page.input_value("#subject") == "Re: Browser question"
        assert "Could you send the figures?" in page.inner_text(".original")
        page.locator(".editor").click()
        page.keyboard.type("Here are the figures.")
        s.shot("reply")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**done=sent**")
        assert page.url.split("?")[0] == thread_url.split("?")[0]
        assert page.locator("article.message").count() == 2
        # forward, while Finn's server defers: queued, and it shows
        world.submission.defer("finn@other-client.test")
        page.locator("article.message").first.locator("a:has-text('Forward')").click()
        page.wait_for_url("**forward_of=**")
        assert page.input_value("#subject") == "Fwd: Browser question"
        page.fill("#to", "finn@other-client.test")
        page.locator(".editor").click()
        page.keyboard.type("FYI Finn")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**done=queued**")
        assert page.locator(".notice", has_text="it will be retried").is_visible()
        badge = page.locator(".send.send-queued")
        assert badge.is_visible() and "queued, will retry" in badge.inner_text()
        assert "450" in badge.inner_text()
        s.shot("queued")
        world.submission.clear_refusals()
        assert s.errors == []
    finally:
        s.close()
    reply = _received(world, "Re: Browser question")
    assert reply["In-Reply-To"] == "<bq@client.test>"
    assert reply["References"] == "<bq-root@client.test> <bq@client.test>"
    assert reply["Cc"] == "finn@other-client.test"
    html = reply.get_body(("html",)).get_content()
    assert "Here are the figures." in html and "Could you send the figures?" in html
    fwd = _received(world, "Fwd: Browser question")
    assert fwd["References"] == "<bq@client.test>"
    assert "FYI Finn" in fwd.get_body(("html",)).get_content()


def test_errors_are_shown_next_to_their_field(browser: Any, world: ComposeWorld, alice: Mailuser,
                                              shots: Path) -> None:
    s = Session(browser, world, alice, shots)
    page = s.page
    try:
        page.goto(f"{world.srv.http_url}/mail/compose")
        page.fill("#to", "dana@client.test, bob@")
        page.fill("#subject", "Has a bad address")
        page.locator(".editor").click()
        page.keyboard.type("Body kept")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_selector("#to-error")
        assert page.inner_text("#to-error") == "'bob@' is not an email address"
        assert page.get_attribute("#to", "aria-invalid") == "true"
        assert page.input_value("#subject") == "Has a bad address"
        assert "Body kept" in page.inner_text(".editor")
        s.shot("field-error")
    finally:
        s.close()


def test_email_links_open_the_users_own_mail_program_with_the_smart_bcc(
        browser: Any, world: ComposeWorld, shots: Path) -> None:
    bob = world.user("bob")
    assert world.srv.cli_proc("user", "set", bob.email, "--email-links", "default-client").returncode == 0
    world.dovecot.append(bob.email, make_message(frm="Dana Client <dana@client.test>", to=bob.email,
                                                 subject="Links for Bob"), "INBOX")
    _sync(world, bob)
    s = Session(browser, world, bob, shots)
    try:
        s.page.click("a.subject:has-text('Links for Bob')")
        href = s.page.locator("a.addr", has_text="Dana Client").get_attribute("href")
        assert href == f"mailto:dana@client.test?bcc={bob.bcc_address}"
    finally:
        s.close()


def test_without_javascript_the_form_sends_plain_text(browser: Any, world: ComposeWorld,
                                                      alice: Mailuser, shots: Path) -> None:
    with world.api(alice.token) as api:
        api.post("/me/templates", json={"name": "Plain intro", "subject": "Hello {{person.name}}",
                                        "html": "<p>Dear {{person.name}}, welcome.</p>"}).raise_for_status()
    s = Session(browser, world, alice, shots, js=False)
    page = s.page
    try:
        page.goto(f"{world.srv.http_url}/mail/compose?person={world.ids['dana']}")
        assert page.locator("textarea#body").is_visible()
        assert page.locator(".editor").count() == 0
        page.select_option("#template_id", label="Plain intro")
        page.click("button[name=apply_template]")
        page.wait_for_load_state()
        assert page.input_value("#subject") == "Hello Dana Client"
        assert page.input_value("textarea#body").startswith("Dear Dana Client, welcome.")
        page.fill("#to", "dana@client.test")
        s.shot("no-js")
        page.click("form#compose button[type=submit]:not([name])")
        page.wait_for_url("**done=sent**")
    finally:
        s.close()
    msg = _received(world, "Hello Dana Client")
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().startswith("Dear Dana Client, welcome.")


def test_a_signature_set_in_settings_is_added_unless_left_out(
        browser: Any, world: ComposeWorld, shots: Path) -> None:
    carl = world.user("carl")
    s = Session(browser, world, carl, shots)
    page = s.page
    try:
        page.click("a:has-text('Settings')")
        page.wait_for_selector("#signature-editor")
        page.locator("#signature-editor").click()
        page.click("button[data-action=bold]")
        page.keyboard.type("Carl Carlsen")
        page.click("button[data-action=bold]")
        page.keyboard.press("Enter")
        page.keyboard.type("ACME sales")
        s.shot("settings-signature")
        page.click("form[action='/mail/settings'] button[type=submit]:not([data-action])")
        page.wait_for_url("**done=saved")
        assert "Carl Carlsen" in page.inner_text("#signature-editor")
        for subject, keep in (("With signature", True), ("Without signature", False)):
            page.goto(f"{world.srv.http_url}/mail/compose?to=dana%40client.test")
            page.fill("#subject", subject)
            page.locator(".editor").click()
            page.keyboard.type("Body text")
            if not keep:
                page.uncheck("input[name=signature]")
            page.click("form#compose button[type=submit]:not([name])")
            page.wait_for_url("**done=sent**")
        assert s.errors == []
    finally:
        s.close()
    html = _received(world, "With signature").get_body(("html",)).get_content()
    assert "<b>Carl Carlsen</b>" in html and html.index("Body text") < html.index("Carl Carlsen")
    assert "Carl Carlsen" not in _received(world, "Without signature").get_body(("html",)).get_content()
    with world.api(carl.token) as api:
        assert "<b>Carl Carlsen</b>" in api.get("/me/settings").json()["signature_html"]
