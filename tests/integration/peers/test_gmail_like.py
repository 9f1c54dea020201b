"""The Gmail-like submission peer (``tests/support/gmail_like.py``) with smtplib: it keeps
its own copy of each accepted message in the user's Sent folder (before answering 250),
takes PLAIN with the password and XOAUTH2 with a provider token, and answers a bad token
the way Gmail does."""

from __future__ import annotations

import base64
import itertools
import json
import smtplib
from collections.abc import Iterator

import pytest

from tests.support.dovecot import Dovecot
from tests.support.gmail_like import GmailLike
from tests.support.oauth_provider import OAuthProvider

_n = itertools.count(1)


@pytest.fixture
def gmail(dovecot: Dovecot, provider: OAuthProvider) -> Iterator[GmailLike]:
    user = dovecot.add_user(f"gm{next(_n)}@gmail-like.test", "app-Pa55word")
    with GmailLike(dovecot, user, provider=provider) as server:
        yield server


def raw_message(sender: str, mid: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <client@crm.test>\r\nSubject: hello\r\nMessage-ID: {mid}\r\n"
            "Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\nbody\r\n").encode()


def connect(gmail: GmailLike) -> smtplib.SMTP:
    c = smtplib.SMTP(gmail.host, gmail.port, timeout=15)
    c.starttls(context=gmail.ssl_context())
    c.ehlo()
    return c


def test_each_accepted_message_is_already_in_sent_once_when_250_comes(gmail: GmailLike, dovecot: Dovecot) -> None:
    with connect(gmail) as c:
        c.login(gmail.user, "app-Pa55word")
        for i in (1, 2):
            assert c.sendmail(gmail.user, ["client@crm.test"], raw_message(gmail.user, f"<gm-{i}@x.test>")) == {}
            assert dovecot.message_ids(gmail.user, "Sent").count(f"<gm-{i}@x.test>") == 1
    assert dovecot.message_ids(gmail.user, "Sent") == ["<gm-1@x.test>", "<gm-2@x.test>"]
    assert [m.rcpt_tos for m in gmail.wait_for(2)] == [["client@crm.test"]] * 2
    assert dovecot.fetch_all(gmail.user, "Sent")[0] == raw_message(gmail.user, "<gm-1@x.test>")


def test_xoauth2_with_a_provider_token_and_gmails_answer_to_a_bad_one(
        gmail: GmailLike, provider: OAuthProvider, dovecot: Dovecot) -> None:
    token = provider.grant(gmail.user, client_id="bccd")["access_token"]
    challenges: list[bytes] = []

    def xoauth2(value: str):  # type: ignore[no-untyped-def]
        def answer(challenge: bytes | None = None) -> str:
            if challenge is not None:
                challenges.append(challenge)
                return ""
            return f"user={gmail.user}\x01auth=Bearer {value}\x01\x01"
        return answer

    with connect(gmail) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.auth("XOAUTH2", xoauth2("not-a-token"))
        assert err.value.smtp_code == 535
        assert json.loads(challenges[0])["status"] == "400"
        assert c.auth("XOAUTH2", xoauth2(token))[0] == 235
        c.sendmail(gmail.user, ["client@crm.test"], raw_message(gmail.user, "<gm-oauth@x.test>"))
    assert gmail.wait_for(1)[0].login == gmail.user
    assert dovecot.message_ids(gmail.user, "Sent") == ["<gm-oauth@x.test>"]


def test_no_auth_before_starttls_and_no_mail_without_auth(gmail: GmailLike) -> None:
    with smtplib.SMTP(gmail.host, gmail.port, timeout=15) as c:
        c.ehlo()
        assert "auth" not in c.esmtp_features
        code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0u\0p").decode())
        assert code == 530
    with connect(gmail) as c:
        code, _ = c.mail(gmail.user)
        assert code == 530
