"""Sending through the user's own mailbox, as providers offer it (SPEC §7, §12): OAuth 2.0
(XOAUTH2 and OAUTHBEARER, the access token refreshed as IMAP's is — when due, and once
more when the server refuses a cached one), implicit TLS and STARTTLS with the certificate
checked, and a Gmail-like provider that saves sent mail itself (no second copy)."""

from __future__ import annotations

import pytest

from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

pytest.importorskip("authlib", reason="the Gmail-like peer takes OAuth tokens of an Authlib provider")
from tests.support.gmail_like import GmailLike  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_mailboxes")]


def _send(world: ComposeWorld, user: Mailuser, subject: str) -> dict:
    with world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": subject,
                                        "html": f"<p>{subject}</p>"})
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_oauth_mailbox_sends_and_refreshes_its_token_as_imap_does(world: ComposeWorld,
                                                                  mechanism: str) -> None:
    user = world.user("oauth", oauth=True, mechanism=mechanism)
    sent = _send(world, user, f"OAuth {mechanism} one")   # no access token yet: refreshed first
    assert world.received(sent["message_id"])
    mid = f"<{sent['message_id']}>"
    wait_for(lambda: mid in world.dovecot.message_ids(user.email, "Sent"))  # IMAP logs in too
    before = world.provider.token_requests["refresh_token"]
    world.provider.expire_access_tokens()                  # the cached token is refused now
    sent = _send(world, user, f"OAuth {mechanism} two")
    assert world.received(sent["message_id"])
    assert world.provider.token_requests["refresh_token"] > before
    assert [e for e in world.srv.log_events() if e.get("event") == "submission_oauth_refreshed"
            and e.get("account") == user.mailbox_id and e.get("after") == "login_refused"]
    # the refreshed (rotated) token was stored: the sent-folder copy logs in with it
    mid = f"<{sent['message_id']}>"
    wait_for(lambda: mid in world.dovecot.message_ids(user.email, "Sent"))


def test_implicit_tls_submission(world: ComposeWorld) -> None:
    user = world.user("smtps", security="ssl")
    sent = _send(world, user, "Over SMTPS")
    assert world.received(sent["message_id"])


def test_an_untrusted_certificate_is_409_and_nothing_is_sent(world: ComposeWorld) -> None:
    user = world.user("untrusted", ca_file=world.dovecot.ca_file)  # trusts Dovecot only
    with world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "Untrusted",
                                        "text": "x"})
    assert r.status_code == 409 and "certificate" in r.json()["detail"]
    assert "not trusted" in r.json()["detail"]


def test_a_provider_that_saves_sent_mail_gets_no_second_copy(world: ComposeWorld) -> None:
    email = f"gm{len(world.dovecot.users)}@mail.test"
    world.dovecot.add_user(email, "right-Pa55")
    with GmailLike(world.dovecot, email) as gm:
        made = world.srv.cli("user", "create", email, "--company", "acme", "--name", "Gee")
        import os
        os.environ["BCCD_TEST_PW"] = "right-Pa55"
        try:
            mailbox = world.srv.cli(
                "imap", "add", email, "--host", "127.0.0.1", "--port", str(world.dovecot.ssl_port),
                "--security", "ssl", "--username", email, "--password-env", "BCCD_TEST_PW",
                "--ca-file", world.ca_with(gm.ca_file), "--smtp-host", "127.0.0.1",
                "--smtp-port", str(gm.port), "--smtp-security", "starttls")
        finally:
            os.environ.pop("BCCD_TEST_PW")
        user = Mailuser(email, made["api_token"], made["bcc_address"], int(mailbox["id"]), made["id"])
        sent = _send(world, user, "Saved by the provider")
        [got] = gm.wait_for(1)
    mid = f"<{sent['message_id']}>"
    assert f"Message-ID: {mid}".encode() in got.data
    wait_for(lambda: [e for e in world.srv.log_events() if e.get("event") == "sent_copy_by_provider"
                      and e.get("message") == sent["id"]])
    assert world.dovecot.message_ids(email, "Sent") == [mid]     # the provider's copy, alone
    world.srv.cli("imap", "sync", "--account", str(user.mailbox_id), "--once")
    with world.api(user.token) as api:
        t = api.get(f"/threads/{sent['thread_id']}").json()
    assert len(t["messages"]) == 1 and sorted(t["messages"][0]["sources"]) == ["compose", "imap"]
