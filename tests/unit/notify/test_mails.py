"""The confirmation and notice emails: structure, escaping, 7-bit transport."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import pytest

from bccd.config import Settings
from bccd.notify import mails

EXPIRES = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)


def _parse(text: str) -> EmailMessage:
    msg = email.message_from_string(text, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.spec("6")
def test_confirmation_mail_is_multipart_alternative_and_escapes_names(settings: Settings) -> None:
    mail = mails.confirmation(settings, user_name="Eve <script>alert(1)</script>",
                              user_email="eve@acme.test", company="Acme & Co",
                              address="eve@home.test", url="https://crm.example/confirm/abc",
                              expires_at=EXPIRES)
    assert mail.message.isascii() and not mail.smtputf8
    assert "\r\n" in mail.message
    msg = _parse(mail.message)
    assert msg.get_content_type() == "multipart/alternative"
    text, html = (p.get_content() for p in msg.iter_parts())
    assert "<script>" in text  # plain text is plain
    assert "<script>" not in html and "&lt;script&gt;" in html and "Acme &amp; Co" in html
    assert "https://crm.example/confirm/abc" in html
    assert "3 days" in text and "2026-11-29 10:00 UTC" in text
    assert msg["To"].addresses[0].addr_spec == "eve@home.test"
    assert msg["From"].addresses[0].addr_spec == "bccd@bcc.localhost"
    assert msg["Auto-Submitted"] == "auto-generated"


@pytest.mark.spec("6")
def test_an_internationalised_address_is_sent_with_smtputf8(settings: Settings) -> None:
    mail = mails.confirmation(settings, user_name="Jürgen", user_email="j@acme.test",
                              company="Acme", address="jürgen@home.test",
                              url="https://x/confirm/a", expires_at=EXPIRES)
    assert mail.smtputf8 and mail.recipients == ("jürgen@home.test",)
    ascii_name = mails.confirmation(settings, user_name="Jürgen", user_email="j@acme.test",
                                    company="Acme", address="j@home.test",
                                    url="https://x/confirm/a", expires_at=EXPIRES)
    assert not ascii_name.smtputf8 and ascii_name.message.isascii()


def test_durations_read_like_a_person_wrote_them() -> None:
    assert mails.human_duration(72 * 3600) == "3 days"
    assert mails.human_duration(7200) == "2 hours"
    assert mails.human_duration(90) == "90 seconds"
    assert mails.human_duration(1) == "1 second"
    assert mails.copies(1) == "a Bcc copy" and mails.copies(3) == "3 Bcc copies"


@pytest.mark.spec("4.4")
def test_the_notice_names_the_address_and_keeps_bcc_capitalised(settings: Settings) -> None:
    mail = mails.notice(settings, user_name="Alice", user_email="alice@acme.test",
                        address="alice@home.test", held=2, settings_url="https://x/mail/settings",
                        expires_at=None, emailed_at=None)
    msg = _parse(mail.message)
    assert msg["Subject"].startswith("2 Bcc copies from alice@home.test kept in quarantine")
    assert mail.recipients == ("alice@acme.test",)
    body = msg.get_body(("plain",))
    assert body is not None and "https://x/mail/settings" in body.get_content()


@pytest.mark.spec("4.4")
def test_the_notice_never_carries_a_link_that_confirms(settings: Settings) -> None:
    """SPEC §4.4: the notice goes to the user's login mailbox; only the quarantined
    address's own mailbox may receive a confirmation link."""
    for emailed in (None, EXPIRES - dt.timedelta(days=1)):
        mail = mails.notice(settings, user_name="Alice", user_email="alice@acme.test",
                            address="alice@home.test", held=1,
                            settings_url="https://x/mail/settings",
                            expires_at=EXPIRES if emailed else None, emailed_at=emailed)
        assert "/confirm/" not in mail.message
