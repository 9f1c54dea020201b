"""The Postfix submission service (``tests/support/submission.py``) with real clients
(smtplib): STARTTLS verified against its CA, implicit TLS, AUTH through the test Dovecot
with a password or an access token of the OAuth provider, the relay into a capture
server byte for byte, scripted refusals, a refused sender and a real DSN."""

from __future__ import annotations

import email
import email.policy
import itertools
import smtplib
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dovecot import Dovecot
from tests.support.oauth_provider import OAuthProvider
from tests.support.submission import UNDELIVERABLE_DOMAIN, Submission, dsn_fields
from tests.support.submission import available as postfix_available

pytestmark = pytest.mark.slow

_n = itertools.count(1)


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureSmtp]:
    with CaptureSmtp() as cap:
        yield cap


@pytest.fixture(scope="module")
def submission(dovecot: Dovecot, capture: CaptureSmtp) -> Iterator[Submission]:
    if not postfix_available():
        pytest.skip("postfix is not installed or we are not root")
    with Submission(dovecot, capture.port) as sub:
        yield sub


@pytest.fixture
def user(dovecot: Dovecot, capture: CaptureSmtp, submission: Submission) -> str:
    capture.clear()
    submission.clear_refusals()
    return dovecot.add_user(f"sender{next(_n)}@mail.test", "right-Pa55")


def message(sender: str, to: str, mid: str, *, extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: Quote #42 =?utf-8?q?caf=C3=A9?=\r\n"
            f"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\nMessage-ID: {mid}\r\n{extra}MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Hello,\r\n\r\n.a line starting with a dot\r\n  trailing spaces  \r\ncaf\u00e9\r\n"
            ).encode()


@pytest.fixture
def smtp(submission: Submission) -> Callable[[], smtplib.SMTP]:
    """A connected client, STARTTLS done with the certificate checked against ca_file."""
    opened: list[smtplib.SMTP] = []

    def connect() -> smtplib.SMTP:
        c = smtplib.SMTP(submission.host, submission.port, timeout=15)
        opened.append(c)
        c.starttls(context=submission.ssl_context())
        c.ehlo()
        return c

    yield connect  # type: ignore[misc]
    for c in opened:
        try:
            c.quit()
        except smtplib.SMTPException:
            c.close()


def xoauth2(user: str, token: str) -> Callable[..., str]:
    def answer(challenge: bytes | None = None) -> str:
        # a failure comes as a 334 JSON challenge, to be answered with an empty line
        return f"user={user}\x01auth=Bearer {token}\x01\x01" if challenge is None else ""
    return answer


def oauthbearer(user: str, token: str) -> Callable[..., str]:
    def answer(challenge: bytes | None = None) -> str:
        return f"n,a={user},\x01auth=Bearer {token}\x01\x01" if challenge is None else "\x01"
    return answer


def test_plain_auth_then_the_message_is_relayed_byte_for_byte(
        submission: Submission, capture: CaptureSmtp, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    raw = message(user, "client@crm.test", "<intact-1@mail.test>")
    c = smtp()
    assert "PLAIN" in c.esmtp_features["auth"]
    c.login(user, "right-Pa55")
    assert c.sendmail(user, ["client@crm.test"], raw) == {}
    got = capture.wait_for(1)[0]
    assert got.mail_from == user and got.rcpt_tos == ["client@crm.test"]
    # Postfix prepends its Received: header and changes nothing else
    assert got.data.startswith(b"Received: from ")
    head, _, rest = got.data.partition(b"\r\nFrom: ")
    assert b"(Authenticated sender: " + user.encode() + b")" in head
    assert b"From: " + rest == raw
    parsed = got.message()
    assert parsed["Message-ID"] == "<intact-1@mail.test>" and parsed["Subject"] == "Quote #42 café"
    assert parsed.get_content().replace("\r\n", "\n") == "Hello,\n\n.a line starting with a dot\n  trailing spaces  \ncafé\n"


def test_a_bcc_header_is_dropped_and_the_bcc_recipient_still_gets_the_mail(
        submission: Submission, capture: CaptureSmtp, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    raw = message(user, "client@crm.test", "<bcc-1@mail.test>", extra="Bcc: <crm@bcc.test>\r\n")
    c = smtp()
    c.login(user, "right-Pa55")
    c.sendmail(user, ["client@crm.test", "crm@bcc.test"], raw)
    got = capture.wait_for(1)[0]
    assert sorted(got.rcpt_tos) == ["client@crm.test", "crm@bcc.test"]
    assert b"\r\nBcc:" not in got.data


def test_auth_is_offered_only_after_starttls_and_the_certificate_verifies(submission: Submission) -> None:
    with smtplib.SMTP(submission.host, submission.port, timeout=15) as c:
        c.ehlo()
        assert "starttls" in c.esmtp_features and "auth" not in c.esmtp_features
        c.starttls(context=submission.ssl_context())  # hostname 127.0.0.1 checked against the cert
        c.ehlo()
        assert {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"} <= set(c.esmtp_features["auth"].split())
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    with smtplib.SMTP(submission.host, submission.port, timeout=15) as c, \
            pytest.raises(ssl.SSLCertVerificationError):
        c.starttls(context=stranger)


def test_implicit_tls_port_takes_login_auth(
        submission: Submission, capture: CaptureSmtp, user: str) -> None:
    assert submission.smtps_port is not None
    with smtplib.SMTP_SSL(submission.host, submission.smtps_port, context=submission.ssl_context(),
                          timeout=15) as c:
        c.ehlo()
        c.esmtp_features["auth"] = "LOGIN"  # make smtplib pick LOGIN over PLAIN
        assert c.login(user, "right-Pa55")[0] == 235
        c.sendmail(user, ["client@crm.test"], message(user, "client@crm.test", "<smtps-1@mail.test>"))
    assert capture.wait_for(1)[0].message()["Message-ID"] == "<smtps-1@mail.test>"


def test_a_wrong_password_is_refused_535(submission: Submission, user: str,
                                         smtp: Callable[[], smtplib.SMTP]) -> None:
    c = smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        c.login(user, "wrong")
    assert err.value.smtp_code == 535 and b"5.7.8" in err.value.smtp_error


def test_without_auth_nothing_is_accepted(submission: Submission, user: str,
                                          smtp: Callable[[], smtplib.SMTP]) -> None:
    c = smtp()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        c.sendmail(user, ["client@crm.test"], message(user, "client@crm.test", "<noauth@mail.test>"))
    code, text = err.value.recipients["client@crm.test"]
    assert code == 554 and b"Access denied" in text


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_an_access_token_of_the_provider_authenticates_until_it_expires(
        mechanism: str, submission: Submission, provider: OAuthProvider, capture: CaptureSmtp, user: str,
        smtp: Callable[[], smtplib.SMTP]) -> None:
    tokens = provider.grant(user, client_id="bccd", scope="openid email https://mail.google.com/")
    make = xoauth2 if mechanism == "XOAUTH2" else oauthbearer
    c = smtp()
    code, _text = c.auth(mechanism, make(user, tokens["access_token"]))
    assert code == 235
    c.sendmail(user, ["client@crm.test"], message(user, "client@crm.test", f"<{mechanism}@mail.test>"))
    assert capture.wait_for(1)[0].message()["Message-ID"] == f"<{mechanism}@mail.test>"
    provider.expire_access_tokens()
    c = smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        c.auth(mechanism, make(user, tokens["access_token"]))
    assert err.value.smtp_code == 535


def test_a_sender_the_login_does_not_own_is_refused_553(
        submission: Submission, capture: CaptureSmtp, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    alias = f"sales-{user}"
    c = smtp()
    c.login(user, "right-Pa55")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        c.sendmail(alias, ["client@crm.test"], message(alias, "client@crm.test", "<alias-1@mail.test>"))
    code, text = err.value.recipients["client@crm.test"]
    assert code == 553 and b"Sender address rejected: not owned by user " + user.encode() in text
    submission.allow_sender(user, alias)
    c.rset()
    assert c.sendmail(alias, ["client@crm.test"], message(alias, "client@crm.test", "<alias-2@mail.test>")) == {}
    assert capture.wait_for(1)[0].mail_from == alias


def test_a_scripted_permanent_refusal_reaches_the_client_with_its_text(
        submission: Submission, capture: CaptureSmtp, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    submission.refuse("gone@crm.test", "550 5.1.1 The email account that you tried to reach is disabled")
    c = smtp()
    c.login(user, "right-Pa55")
    refused = c.sendmail(user, ["gone@crm.test", "client@crm.test"],
                         message(user, "client@crm.test", "<perm-1@mail.test>"))
    assert refused == {"gone@crm.test": (550, b"5.1.1 <gone@crm.test>: Recipient address rejected: "
                                              b"The email account that you tried to reach is disabled")}
    assert capture.wait_for(1)[0].rcpt_tos == ["client@crm.test"]


def test_a_scripted_temporary_refusal_is_4xx_and_a_retry_later_goes_through(
        submission: Submission, capture: CaptureSmtp, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    submission.defer("crm.test", "450 4.2.1 Try again later")  # the whole domain
    raw = message(user, "client@crm.test", "<temp-1@mail.test>")
    c = smtp()
    c.login(user, "right-Pa55")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        c.sendmail(user, ["client@crm.test"], raw)
    assert err.value.recipients["client@crm.test"] == (
        450, b"4.2.1 <client@crm.test>: Recipient address rejected: Try again later")
    submission.clear_refusals()
    c.rset()
    assert c.sendmail(user, ["client@crm.test"], raw) == {}
    assert capture.wait_for(1)[0].message()["Message-ID"] == "<temp-1@mail.test>"


def test_an_undeliverable_recipient_brings_a_real_dsn_into_the_senders_inbox(
        submission: Submission, dovecot: Dovecot, user: str, smtp: Callable[[], smtplib.SMTP]) -> None:
    rcpt = f"nobody@{UNDELIVERABLE_DOMAIN}"
    c = smtp()
    c.login(user, "right-Pa55")
    assert c.sendmail(user, [rcpt], message(user, rcpt, "<bounced-1@mail.test>")) == {}
    raw = submission.bounce_for("<bounced-1@mail.test>", users=[user])
    assert raw in dovecot.fetch_all(user)  # Postfix delivered it into her INBOX
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert dsn["From"].addresses[0].username == "MAILER-DAEMON" and dsn["To"] == user
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in dsn.iter_parts()] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    per_message, recipients = dsn_fields(raw)
    assert per_message["Reporting-MTA"] == "dns; smtp.mail.test"
    assert recipients == [{
        "Final-Recipient": f"rfc822; {rcpt}", "Original-Recipient": f"rfc822;{rcpt}", "Action": "failed",
        "Status": "5.1.1", "Remote-MTA": "dns; 127.0.0.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 The email account that you tried to reach does not exist"}]
    returned = next(p for p in dsn.iter_parts() if p.get_content_type() == "message/rfc822")
    assert returned.get_content()["Message-ID"] == "<bounced-1@mail.test>"

