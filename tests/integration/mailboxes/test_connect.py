"""Users connect their own mailboxes (SPEC §7) through the API against real peers: the
test Dovecot for password mailboxes, the loopback OAuth provider for consent (its access
tokens are what Dovecot accepts over XOAUTH2), a real ``bccd serve`` syncing."""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
import trustme

from tests.integration.mailboxes.conftest import api, message
from tests.support.dovecot import Dovecot
from tests.support.oauth_provider import OAuthProvider
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("7")

_n = iter(range(1, 10_000))


def _token(site: BccdServer, who: str = "alice") -> str:
    return site.users[who]["api_token"]  # type: ignore[attr-defined]


def _other(dovecot: Dovecot, **kw: object) -> dict[str, object]:
    return {"provider": "other", "host": "127.0.0.1", "port": dovecot.ssl_port, **kw}


def test_a_password_mailbox_is_saved_after_bccd_logged_in_and_listed_its_folders(
        site: BccdServer, dovecot: Dovecot) -> None:
    login = dovecot.add_user(f"pw{next(_n)}@mail.test", "app-pass-1")
    dovecot.append(login, message(1))
    with api(site, _token(site)) as c:
        r = c.post("/me/mailboxes", json=_other(dovecot, email=login, password="app-pass-1"))
        assert r.status_code == 201, r.text
        box = r.json()
        assert box["username"] == login and box["provider"] == "other" and box["auth"] == "password"
        assert "INBOX" in box["server_folders"] and "Sent" in box["server_folders"]
        assert box["smtp"] is None  # "other": no submission server unless given
        shown = wait_until(lambda: (m := c.get(f"/me/mailboxes/{box['id']}").json())[
            "initial_sync_done_at"] and m, what="the initial sync", timeout=30)
        assert shown["messages_synced"] == 1 and shown["state"] == "active"
        assert shown["progress"] == {"done": 1, "total": 1}
        assert [m["id"] for m in c.get("/me/mailboxes").json()] == [box["id"]]


def test_a_preset_fills_hosts_submission_and_the_providers_authserv_id(
        site: BccdServer) -> None:
    with api(site, _token(site)) as c:
        presets = {p["id"]: p for p in c.get("/me/mailboxes/providers").json()["presets"]}
    gmail = presets["gmail"]
    assert (gmail["imap_host"], gmail["imap_port"], gmail["smtp_host"], gmail["smtp_port"]) == (
        "imap.gmail.com", 993, "smtp.gmail.com", 465)
    assert gmail["authserv_ids"] == ["mx.google.com"] and gmail["oauth_available"] is True
    assert presets["outlook"]["oauth_available"] is False  # no [oauth.microsoft] here
    assert presets["exchange_activesync"]["imap"] is False
    assert "not IMAP" in presets["exchange_activesync"]["notes"]


@pytest.mark.parametrize("what", ["wrong_password", "unreachable", "untrusted_tls", "activesync"])
def test_a_failed_login_answers_with_the_servers_reason_and_saves_nothing(
        site: BccdServer, dovecot: Dovecot, what: str, tls_stranger: int) -> None:
    login = dovecot.add_user(f"bad{next(_n)}@mail.test", "right")
    body = {"wrong_password": _other(dovecot, email=login, password="wrong"),
            "unreachable": _other(dovecot, email=login, password="right", port=_closed_port()),
            "untrusted_tls": _other(dovecot, email=login, password="right", port=tls_stranger),
            "activesync": {"provider": "exchange_activesync", "email": login, "password": "x"},
            }[what]
    with api(site, _token(site)) as c:
        r = c.post("/me/mailboxes", json=body)
        assert r.status_code == 422, r.text
        problem = r.json()
        if what == "wrong_password":
            assert problem["kind"] == "auth" and "AUTHENTICATIONFAILED" in problem["detail"].upper()
        elif what == "unreachable":
            assert problem["kind"] == "connect" and "refused" in problem["detail"]
        elif what == "untrusted_tls":
            assert problem["kind"] == "tls" and "not trusted" in problem["detail"]
        else:
            assert "not IMAP" in problem["detail"]
        assert c.get("/me/mailboxes").json() == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_stranger() -> Iterator[int]:
    """A TLS listener whose certificate comes from a CA nobody trusts."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(sock.getsockname()[1])
    stop.set()
    t.join(5)
    sock.close()


# ---------------------------------------------------------------- OAuth consent


def consent(site: BccdServer, provider: OAuthProvider, email: str, *, body: dict | None = None,
            token: str | None = None, name: str = "google") -> tuple[str, httpx.Response]:
    """The browser's part, by hand: the consent URL from the API, the provider's redirect,
    the callback. Returns (callback URL, callback response)."""
    provider.login_as(email)
    with api(site, token or _token(site)) as c:
        r = c.post(f"/me/mailboxes/oauth/{name}", json=body or {})
        assert r.status_code == 200, r.text
        url = r.json()["authorize_url"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["code_challenge_method"] == "S256" and q["state"] and q["code_challenge"]
    with httpx.Client() as browser:
        back = browser.get(url, follow_redirects=False)
        assert back.status_code == 302, back.text
        location = back.headers["location"]
        assert location.startswith(f"{site.http_url}/oauth/callback?")
        return location, browser.get(location, follow_redirects=False)


@pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True)
def test_oauth_consent_saves_the_mailbox_and_it_syncs_over_xoauth2(
        site: BccdServer, provider: OAuthProvider, dovecot: Dovecot) -> None:
    email = dovecot.add_user(f"oauth{next(_n)}@mail.test", "unused")
    dovecot.append(email, message(1))
    location, done = consent(site, provider, email)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/mail/settings/mailboxes/")
    box_id = int(done.headers["location"].split("/")[-1].split("?")[0])
    with api(site, _token(site)) as c:
        box = wait_until(lambda: (m := c.get(f"/me/mailboxes/{box_id}").json())[
            "initial_sync_done_at"] and m, what="the initial sync over XOAUTH2", timeout=30)
        assert box["messages_synced"] == 1
    assert box["username"] == email and box["auth"] == "xoauth2" and box["provider"] == "gmail"
    assert box["oauth_provider"] == "google" and box["authserv_ids"] == ["mx.google.com"]
    assert box["state"] == "active" and not box["needs_signin"]
    # the refresh token is stored encrypted: not in the database file in clear
    # the same callback again (a replayed code): its state is used up → 400, nothing new
    with httpx.Client() as browser:
        again = browser.get(location, follow_redirects=False)
    assert again.status_code == 400 and "already used" in again.text
    with api(site, _token(site)) as c:
        assert len(c.get("/me/mailboxes").json()) == 1


def test_the_refresh_token_is_encrypted_at_rest(site: BccdServer, provider: OAuthProvider,
                                                dovecot: Dovecot) -> None:
    email = dovecot.add_user(f"enc{next(_n)}@mail.test", "unused")
    _, done = consent(site, provider, email)
    assert done.status_code == 303
    raw = b"".join(p.read_bytes() for p in (site.dir / "var").glob("bccd.sqlite3*"))
    issued = [t.refresh_token for t in provider._by_refresh.values()
              if t.user.email == email]
    assert issued and not any(t.encode() in raw for t in issued if t)


@pytest.mark.parametrize("case", ["unknown_state", "mismatched_state", "denied", "no_code"])
def test_a_bad_callback_is_400_and_saves_nothing(site: BccdServer, provider: OAuthProvider,
                                                 dovecot: Dovecot, case: str) -> None:
    email = dovecot.add_user(f"cb{next(_n)}@mail.test", "unused")
    with httpx.Client() as browser:
        if case == "unknown_state":
            r = browser.get(f"{site.http_url}/oauth/callback?code=abc&state=never-issued")
            assert "not one bccd asked for" in r.text
        elif case == "denied":
            provider.deny_next()
            _, r = consent(site, provider, email)
            assert "not allowed" in r.text
        else:
            provider.login_as(email)
            with api(site, _token(site)) as c:
                url = c.post("/me/mailboxes/oauth/google").json()["authorize_url"]
            loc = browser.get(url, follow_redirects=False).headers["location"]
            parts = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
            if case == "mismatched_state":
                parts["state"] = parts["state"][:-2] + "xx"
            else:
                parts.pop("code")
            r = browser.get(f"{site.http_url}/oauth/callback?{urllib.parse.urlencode(parts)}")
    assert r.status_code == 400, r.text
    with api(site, _token(site)) as c:
        assert c.get("/me/mailboxes").json() == []


def test_an_unknown_provider_is_404(site: BccdServer) -> None:
    with api(site, _token(site)) as c:
        r = c.post("/me/mailboxes/oauth/nosuch")
    assert r.status_code == 404 and "[oauth.nosuch]" in r.json()["detail"]


def test_an_expired_grant_pauses_with_sign_in_again_and_signing_in_again_resumes(
        site: BccdServer, provider: OAuthProvider, dovecot: Dovecot) -> None:
    email = dovecot.add_user(f"exp{next(_n)}@mail.test", "unused")
    _, done = consent(site, provider, email)
    box_id = int(done.headers["location"].split("/")[-1].split("?")[0])
    with api(site, _token(site)) as c:
        wait_until(lambda: c.get(f"/me/mailboxes/{box_id}").json()["initial_sync_done_at"],
                   what="the first sync", timeout=30)
        for t in list(provider._by_refresh.values()):
            if t.user.email == email and t.refresh_token:
                provider.revoke(t.refresh_token)
        provider.expire_access_tokens()
        site.stop()  # a connected session lives on; the next one must refresh the token
        site.start()
        box = wait_until(lambda: (m := c.get(f"/me/mailboxes/{box_id}").json())["needs_signin"] and m,
                         what="the mailbox to ask for sign-in", timeout=60)
        assert box["state"] == "paused" and "invalid_grant" in box["reason"]
        assert box["next_attempt_at"]
        # sign in again (the page's button does the same POST)
        _, again = consent(site, provider, email, body={"mailbox_id": box_id})
        assert again.status_code == 303 and again.headers["location"].startswith(
            f"/mail/settings/mailboxes/{box_id}")
        box = c.get(f"/me/mailboxes/{box_id}").json()
        assert box["state"] == "active" and not box["needs_signin"]
        assert len(c.get("/me/mailboxes").json()) == 1


def test_a_first_login_that_fails_pauses_the_new_mailbox_with_the_servers_reason(
        site: BccdServer, provider: OAuthProvider, dovecot: Dovecot) -> None:
    email = f"first{next(_n)}@mail.test"  # [oauth.corp]'s IMAP port is closed
    _, done = consent(site, provider, email, name="corp")
    assert done.status_code == 303
    box_id = int(done.headers["location"].split("/")[-1].split("?")[0])
    with api(site, _token(site)) as c:
        box = c.get(f"/me/mailboxes/{box_id}").json()
    assert box["state"] == "paused" and box["needs_signin"] and "refused" in box["reason"]
    assert box["provider"] == "corp" and box["oauth_provider"] == "corp"


def test_edit_folders_from_the_server_list_scope_writeback_and_submission(
        site: BccdServer, dovecot: Dovecot) -> None:
    login = dovecot.add_user(f"ed{next(_n)}@mail.test", "pw")
    with api(site, _token(site)) as c:
        box = c.post("/me/mailboxes", json=_other(dovecot, email=login, password="pw")).json()
        folders = c.get(f"/me/mailboxes/{box['id']}/folders").json()
        assert {"name": "Sent", "special": "\\Sent", "selectable": True} in folders
        r = c.patch(f"/me/mailboxes/{box['id']}", json={"folders": ["Nope"]})
        assert r.status_code == 422 and "Nope" in r.json()["detail"]
        r = c.patch(f"/me/mailboxes/{box['id']}", json={
            "folders": ["INBOX", "Sent"], "scope": "known", "on_archive": "archive",
            "smtp": {"host": "127.0.0.1", "port": 2587, "security": "starttls"}})
        assert r.status_code == 200, r.text
        m = r.json()
        assert m["folders"] == ["INBOX", "Sent"] and m["scope"] == "known"
        assert m["on_archive"] == "archive"
        assert m["smtp"] == {"host": "127.0.0.1", "port": 2587, "security": "starttls"}
        r = c.patch(f"/me/mailboxes/{box['id']}", json={"folders": [], "remove_smtp": True})
        assert r.json()["folders"] == "all" and r.json()["smtp"] is None
    # another user's mailbox is not found
    other = site.setup_user("bob@acme.test", name="Bob")
    with api(site, other["api_token"]) as c:
        assert c.get(f"/me/mailboxes/{box['id']}").status_code == 404
        assert c.delete(f"/me/mailboxes/{box['id']}").status_code == 404


def test_admins_see_their_companys_mailboxes_states_not_their_mail(
        site: BccdServer, dovecot: Dovecot) -> None:
    login = dovecot.add_user(f"adm{next(_n)}@mail.test", "pw")
    with api(site, _token(site)) as c:
        c.post("/me/mailboxes", json=_other(dovecot, email=login, password="pw")).raise_for_status()
        assert c.get("/admin/mailboxes").status_code == 403
    boss = site.cli("user", "list", "--company", "acme")
    assert boss
    token = site.cli("user", "create", "admin2@acme.test", "--company", "acme", "--admin")["api_token"]
    with api(site, token) as c:
        rows = c.get("/admin/mailboxes").json()
    assert [(r["user"], r["username"]) for r in rows] == [("alice@acme.test", login)]
    assert {"state", "reason", "last_sync_at", "messages_synced"} <= set(rows[0])
    assert not any("secret" in k or "password" in k for k in rows[0])
