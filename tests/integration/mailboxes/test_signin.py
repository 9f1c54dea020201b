"""Signing in like a user (SPEC §9): the emailed single-use link (through ``outbound``,
the same answer for any address, a GET that never signs in) and OpenID Connect against
the loopback provider (discovery, RS256 ID token, nonce, verified email) — and the whole
mailbox consent flow in headless Chromium from the settings page and back."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dovecot import Dovecot
from tests.support.oauth_provider import OAuthProvider
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("9")

CHROMIUM = os.environ.get("BCCD_TEST_CHROMIUM", "/usr/bin/chromium")


def _nonce(c: httpx.Client, site: BccdServer) -> str:
    page = c.get(f"{site.http_url}/mail/login")
    assert page.status_code == 200 and 'name="email"' in page.text and 'name="token"' in page.text
    return re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_the_emailed_link_signs_in_once_and_the_answer_never_tells_who_is_a_user(
        site: BccdServer, outbox: CaptureSmtp) -> None:
    with httpx.Client() as c:
        nonce = _nonce(c, site)
        unknown = c.post(f"{site.http_url}/mail/login", data={"nonce": nonce, "email": "nobody@acme.test"})
        known = c.post(f"{site.http_url}/mail/login", data={"nonce": nonce, "email": "Alice@acme.test"})
    strip = lambda r: re.sub(r"<strong>[^<]*</strong>|value=\"[^\"]*\"", "", r.text)  # noqa: E731
    assert unknown.status_code == known.status_code == 200 and strip(unknown) == strip(known)
    mail = outbox.wait_for(1, 30)[0]
    assert mail.rcpt_tos == ["alice@acme.test"]
    url = re.search(r"(http://\S+/mail/login/link/[\w-]+)", mail.part("text/plain")).group(1)  # type: ignore[union-attr]
    with httpx.Client() as browser:
        shown = browser.get(url)  # a mail scanner's prefetch: shows a button, signs nobody in
        assert shown.status_code == 200 and "alice@acme.test" in shown.text
        assert "bccd_session" not in browser.cookies
        token = url.rsplit("/", 1)[1]
        done = browser.post(url, data={"token": token}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/mail"
        assert "bccd_session" in done.cookies
        assert browser.get(f"{site.http_url}/mail").status_code == 200
    with httpx.Client() as other:
        again = other.post(url, data={"token": token}, follow_redirects=False)
        assert again.status_code == 410 and "already used" in again.text
        assert other.get(f"{site.http_url}/mail/login/link/{'x' * 43}").status_code == 404
    assert len(outbox.messages) == 1  # the unknown address got nothing


def _oidc(site: BccdServer, provider: OAuthProvider, email: str, *, verified: bool = True) -> httpx.Response:
    provider.login_as(email, email_verified=verified)
    with httpx.Client() as c:
        nonce = _nonce(c, site)
        go = c.post(f"{site.http_url}/mail/login/oidc", data={"nonce": nonce}, follow_redirects=False)
        assert go.status_code == 303 and go.headers["location"].startswith(provider.authorize_url)
        back = c.get(go.headers["location"], follow_redirects=False)
        assert back.status_code == 302
        return c.get(back.headers["location"], follow_redirects=False)


def test_openid_connect_signs_in_a_user_by_verified_email(site: BccdServer, provider: OAuthProvider) -> None:
    done = _oidc(site, provider, "alice@acme.test")
    assert done.status_code == 303 and done.headers["location"] == "/mail"
    assert "bccd_session" in done.cookies
    unverified = _oidc(site, provider, "alice@acme.test", verified=False)
    assert unverified.status_code == 403 and "not verified" in unverified.text
    stranger = _oidc(site, provider, "mallory@elsewhere.test")
    assert stranger.status_code == 403 and "No Smart Bcc user" in stranger.text


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium")
def test_the_consent_flow_in_a_browser_from_the_settings_page_and_back(
        site: BccdServer, provider: OAuthProvider, dovecot: Dovecot, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    email = dovecot.add_user("browser-consent@mail.test", "unused")
    provider.login_as(email)
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = b.new_page()
            page.goto(f"{site.http_url}/mail/login")
            page.screenshot(path=str(shots / "login.png"), full_page=True)
            page.click("summary")
            page.fill("#token", site.users["alice"]["api_token"])  # type: ignore[attr-defined]
            page.click("details button[type=submit]")
            page.wait_for_url("**/mail")
            page.goto(f"{site.http_url}/mail/settings")
            page.click("#add-mailbox")
            page.screenshot(path=str(shots / "providers.png"), full_page=True)
            assert page.locator("a.not-imap", has_text="Exchange ActiveSync").is_visible()
            page.click("a[data-provider=gmail]")
            page.screenshot(path=str(shots / "gmail.png"), full_page=True)
            page.click("#oauth-signin")  # → the provider consents → /oauth/callback → back
            page.wait_for_url("**/mail/settings/mailboxes/*?done=connected")
            assert page.locator("h1", has_text=email).is_visible()
            assert "Mailbox connected." in page.inner_text("body")
            page.screenshot(path=str(shots / "connected.png"), full_page=True)

            def synced() -> bool:
                page.reload()
                return "Last sync" in page.inner_text("#status-line")

            wait_until(synced, what="the status line to show the first sync", timeout=30)
            assert page.locator("input[name=folders][value=Sent]").count() == 1
            page.goto(f"{site.http_url}/mail/settings")
            assert page.locator("#mailboxes", has_text=email).is_visible()
            page.screenshot(path=str(shots / "settings.png"), full_page=True)
        finally:
            b.close()
    print(f"screenshots: {shots}")
